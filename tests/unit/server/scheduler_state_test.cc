// GET /v1/scheduler/state body: the JSON shape the dashboard reads (docs/SERVER.md).
#include "server/scheduler_state.h"

#include <gtest/gtest.h>

namespace fs::server {
namespace {

SchedulerSnapshot make_snapshot() {
  SchedulerSnapshot s;
  s.t_s = 12.5;
  s.policy = "skip-join-mlfq";
  s.kv_policy = "proactive";
  s.num_iterations = 42;
  s.last_iteration_s = 0.031;
  s.num_running = 1;
  s.num_waiting = 1;
  s.num_live_jobs = 2;
  SchedulerQueueView q0;
  q0.level = 0;
  q0.quantum_s = 0.01;
  q0.num_jobs = 1;
  SchedulerJobView j;
  j.job_id = 7;
  j.request_id = "chatcmpl-7";
  j.state = "running";
  j.kv_location = "device";
  j.num_kv_blocks = 3;
  j.num_prompt_tokens = 30;
  j.num_generated_tokens = 5;
  j.max_new_tokens = 64;
  q0.jobs.push_back(j);
  SchedulerQueueView q1;
  q1.level = 1;
  q1.quantum_s = -1;
  q1.num_jobs = 1;
  j.job_id = 8;
  j.request_id = "cmpl-8";
  j.state = "offloaded";
  j.kv_location = "host";
  j.level = 1;
  j.priority = -2;
  j.waiting_s = 0.25;
  q1.jobs.push_back(j);
  s.queues = {q0, q1};
  s.batch = {{7, "chatcmpl-7", 1, false, 0}};
  s.kv_block_size_tokens = 16;
  s.kv_block_bytes = 1024;
  s.device_kv_blocks_used = 3;
  s.device_kv_blocks_total = 12;
  s.host_kv_blocks_used = 3;
  s.host_kv_blocks_total = 6;
  s.kv_bytes_swapped_out_total = 3072;
  s.kv_bytes_swapped_in_total = 1024;
  s.ttft = {10, 0.05, 0.04, 0.09, 0.1};
  s.series = {{1, 1, 0, 0.25, 0, 10, 100, 0}, {2, 1, 1, 0.25, 0.5, 20, 0, 3072}};
  return s;
}

TEST(SchedulerState, JsonHasQueuesBatchPoolsLatencyAndSeries) {
  const SchedulerSnapshot s = make_snapshot();
  const nlohmann::json j = scheduler_state_json(&s);
  EXPECT_EQ(j["object"], "scheduler.state");
  EXPECT_EQ(j["ready"], true);
  EXPECT_EQ(j["policy"], "skip-join-mlfq");
  EXPECT_EQ(j["iterations"]["total"], 42);
  EXPECT_DOUBLE_EQ(j["iterations"]["last_s"].get<double>(), 0.031);
  EXPECT_EQ(j["requests"]["running"], 1);
  ASSERT_EQ(j["queues"].size(), 2u);
  EXPECT_DOUBLE_EQ(j["queues"][0]["quantum_s"].get<double>(), 0.01);
  EXPECT_TRUE(j["queues"][1]["quantum_s"].is_null());  // unbounded
  const auto& job = j["queues"][1]["jobs"][0];
  EXPECT_EQ(job["id"], 8);
  EXPECT_EQ(job["request_id"], "cmpl-8");
  EXPECT_EQ(job["state"], "offloaded");
  EXPECT_EQ(job["kv"], "host");
  EXPECT_EQ(job["priority"], -2);
  EXPECT_EQ(j["queues"][0]["jobs"][0]["priority"], 0);
  EXPECT_EQ(job["prompt_tokens"], 30);
  EXPECT_EQ(job["generated_tokens"], 5);
  EXPECT_EQ(job["max_tokens"], 64);
  EXPECT_DOUBLE_EQ(job["waiting_s"].get<double>(), 0.25);
  ASSERT_EQ(j["batch"].size(), 1u);
  EXPECT_EQ(j["batch"][0]["id"], 7);
  EXPECT_EQ(j["batch"][0]["prefill"], false);
  EXPECT_EQ(j["kv"]["device"]["used_blocks"], 3);
  EXPECT_DOUBLE_EQ(j["kv"]["device"]["usage"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(j["kv"]["host"]["usage"].get<double>(), 0.5);
  EXPECT_EQ(j["swap"]["bytes_out_total"], 3072);
  EXPECT_EQ(j["swap"]["bytes_in_total"], 1024);
  EXPECT_EQ(j["latency"]["ttft"]["count"], 10);
  EXPECT_DOUBLE_EQ(j["latency"]["ttft"]["p99_s"].get<double>(), 0.1);
  EXPECT_EQ(j["latency"]["jct"]["count"], 0);
  ASSERT_EQ(j["series"]["t_s"].size(), 2u);
  EXPECT_EQ(j["series"]["waiting"][1], 1);
  EXPECT_DOUBLE_EQ(j["series"]["generation_tokens_per_s"][1].get<double>(), 20);
  EXPECT_DOUBLE_EQ(j["series"]["swap_bytes_per_s"][1].get<double>(), 3072);
}

TEST(SchedulerState, NullSnapshotGivesTheSameShapeEmpty) {
  const nlohmann::json j = scheduler_state_json(nullptr);
  EXPECT_EQ(j["ready"], false);
  EXPECT_TRUE(j["queues"].is_array());
  EXPECT_TRUE(j["queues"].empty());
  EXPECT_TRUE(j["batch"].empty());
  EXPECT_EQ(j["kv"]["device"]["usage"], 0.0);
  EXPECT_TRUE(j["series"]["t_s"].empty());
  for (const char* key :
       {"iterations", "requests", "kv", "swap", "counters", "latency", "series"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
}

}  // namespace
}  // namespace fs::server
