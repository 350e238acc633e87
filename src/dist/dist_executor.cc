#include "dist/dist_executor.h"

#include <cstring>
#include <optional>

#include <unistd.h>

#include "core/check.h"
#include "core/log.h"
#include "dist/cuda_shard.h"
#include "engine/cpu_executor.h"

namespace fs::dist {
namespace {

// Commands rank 0 broadcasts; a message is [command, payload words] then the payload (int64 words).
enum Command : int64_t { kAllocateKv = 1, kSwap = 2, kForward = 3, kShutdown = 4 };
// Point-to-point tags.
constexpr int kHiddenTag = 1;  // [num_tokens, hidden] f32 from stage s to stage s + 1
constexpr int kLogitsTag = 2;  // [rows, vocab] f32 from the last stage to rank 0
// Pipelined: rank 0's commands to each rank, [command, payload words] then the payload.
constexpr int kCommandTag = 3;

std::span<uint8_t> bytes_of(std::span<int64_t> words) {
  return {reinterpret_cast<uint8_t*>(words.data()), words.size_bytes()};
}

// The forward call as the payload carries it: per sequence num_past, flags (1: all_logits, 2:
// greedy), n_tokens, tokens,
// n_blocks, blocks.
void encode_forward(std::span<const ForwardSeq> seqs, std::vector<int64_t>& out) {
  out.push_back(static_cast<int64_t>(seqs.size()));
  for (const ForwardSeq& s : seqs) {
    out.push_back(s.num_past);
    out.push_back((s.all_logits ? 1 : 0) | (s.greedy ? 2 : 0));
    out.push_back(static_cast<int64_t>(s.tokens.size()));
    out.insert(out.end(), s.tokens.begin(), s.tokens.end());
    out.push_back(static_cast<int64_t>(s.block_table.size()));
    out.insert(out.end(), s.block_table.begin(), s.block_table.end());
  }
}

struct DecodedForward {
  std::vector<int32_t> ids;  // every sequence's tokens, then every block table
  std::vector<ForwardSeq> seqs;
};

void decode_forward(std::span<const int64_t> in, DecodedForward& out) {
  size_t i = 0;
  const int64_t n = in[i++];
  struct Range {
    size_t tokens_begin, tokens_size, blocks_begin, blocks_size;
  };
  std::vector<Range> ranges;
  out.ids.clear();
  out.seqs.assign(n, ForwardSeq{});
  for (int64_t s = 0; s < n; ++s) {
    out.seqs[s].num_past = in[i++];
    const int64_t flags = in[i++];
    out.seqs[s].all_logits = (flags & 1) != 0;
    out.seqs[s].greedy = (flags & 2) != 0;
    Range r{};
    r.tokens_size = static_cast<size_t>(in[i++]);
    r.tokens_begin = out.ids.size();
    for (size_t k = 0; k < r.tokens_size; ++k) out.ids.push_back(static_cast<int32_t>(in[i++]));
    r.blocks_size = static_cast<size_t>(in[i++]);
    r.blocks_begin = out.ids.size();
    for (size_t k = 0; k < r.blocks_size; ++k) out.ids.push_back(static_cast<int32_t>(in[i++]));
    ranges.push_back(r);
  }
  for (int64_t s = 0; s < n; ++s) {  // spans once ids no longer grows
    out.seqs[s].tokens =
        std::span<const int32_t>(out.ids).subspan(ranges[s].tokens_begin, ranges[s].tokens_size);
    out.seqs[s].block_table =
        std::span<const int32_t>(out.ids).subspan(ranges[s].blocks_begin, ranges[s].blocks_size);
  }
}

void encode_swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads,
                 std::vector<int64_t>& out) {
  for (std::span<const BlockCopy> moves : {offloads, uploads}) {
    out.push_back(static_cast<int64_t>(moves.size()));
    for (const BlockCopy& m : moves) {
      out.push_back(m.src);
      out.push_back(m.dst);
    }
  }
}

void decode_swap(std::span<const int64_t> in, std::vector<BlockCopy>& offloads,
                 std::vector<BlockCopy>& uploads) {
  size_t i = 0;
  for (std::vector<BlockCopy>* moves : {&offloads, &uploads}) {
    moves->assign(static_cast<size_t>(in[i++]), BlockCopy{});
    for (BlockCopy& m : *moves) {
      m.src = static_cast<int32_t>(in[i++]);
      m.dst = static_cast<int32_t>(in[i++]);
    }
  }
}

int64_t num_logit_rows(std::span<const ForwardSeq> seqs) {
  int64_t rows = 0;
  for (const ForwardSeq& s : seqs) rows += s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
  return rows;
}

LogitsMessage logits_message(std::span<const ForwardSeq> seqs, int64_t vocab, bool device_picks) {
  bool any_greedy = false, all_greedy = true;
  for (const ForwardSeq& s : seqs) {
    const bool greedy = device_picks && s.greedy && !s.all_logits;
    any_greedy = any_greedy || greedy;
    all_greedy = all_greedy && greedy;
  }
  LogitsMessage m;
  m.rows = num_logit_rows(seqs);
  m.pick_floats = any_greedy ? m.rows * 2 : 0;
  m.logit_floats = all_greedy ? 0 : m.rows * vocab;
  return m;
}

// Rank 0's side of a received message: the picks copied out, the logits a view into `message`.
std::span<const float> unpack_logits(const LogitsMessage& m, std::span<const float> message,
                                     std::vector<GreedyPick>& picks) {
  picks.resize(m.pick_floats / 2);
  std::memcpy(static_cast<void*>(picks.data()), message.data(), m.pick_floats * sizeof(float));
  return message.subspan(m.pick_floats, m.logit_floats);
}

}  // namespace

// One rank's shard, its KV pools (the local executor: a CpuExecutor over the shard's CausalLm, or
// a CudaExecutor on this rank's GPU) and the hooks that connect it to the other ranks.
class ShardRunner {
 public:
  // CPU: the CausalLm's hooks go over MPI (world and tp_group).
  ShardRunner(std::shared_ptr<Communicator> world, std::unique_ptr<Communicator> tp_group,
              ParallelLayout layout, std::unique_ptr<CausalLm> lm)
      : world_(std::move(world)),
        tp_group_(std::move(tp_group)),
        layout_(layout),
        lm_(std::move(lm)),
        local_(std::make_unique<CpuExecutor>(*lm_)) {
    CausalLm::DistHooks hooks;
    if (layout_.tp > 1) {
      hooks.all_reduce = [this](float* data, int64_t count) {
        check(tp_group_->all_reduce_sum(std::span<float>(data, count)),
              "tensor-parallel all-reduce");
      };
    }
    if (!layout_.first_stage()) {
      const int src = layout_.rank_of(layout_.stage() - 1, layout_.tp_rank());
      hooks.recv_hidden = [this, src](float* data, int64_t count) {
        check(world_->recv({reinterpret_cast<uint8_t*>(data), count * sizeof(float)}, src,
                           kHiddenTag),
              "receiving hidden states from the previous stage");
      };
    }
    if (!layout_.last_stage()) {
      const int dst = layout_.rank_of(layout_.stage() + 1, layout_.tp_rank());
      hooks.send_hidden = [this, dst](const float* data, int64_t count) {
        check(world_->send({reinterpret_cast<const uint8_t*>(data), count * sizeof(float)}, dst,
                           kHiddenTag),
              "sending hidden states to the next stage");
      };
    }
    lm_->set_dist_hooks(std::move(hooks));
  }

  // GPU: the executor's hooks are already connected (dist/cuda_shard.h); `comms` are the NCCL
  // communicators they use.
  ShardRunner(std::shared_ptr<Communicator> world, ParallelLayout layout,
              std::vector<std::unique_ptr<Communicator>> comms, std::unique_ptr<Executor> local)
      : world_(std::move(world)),
        layout_(layout),
        device_comms_(std::move(comms)),
        local_(std::move(local)) {}

  ~ShardRunner() { local_.reset(); }  // before the communicators its hooks call

  const ParallelLayout& layout() const { return layout_; }
  Communicator& world() { return *world_; }
  Status set_kv_dtype(cpu::KvDtype dtype) {
    if (!lm_) {  // a GPU rank: its cache is bf16 whatever the CPU default
      if (dtype == cpu::KvDtype::kF32) return Status::ok();
      return invalid_argument(
          "--kv-cache-dtype f16 is for CPU ranks (the GPU ranks' cache is bf16)");
    }
    lm_->set_kv_dtype(dtype);
    return Status::ok();
  }
  Executor& local() { return *local_; }

  void check(const Status& s, const char* what) const {
    if (!s.is_ok()) fatal(layout_.rank, what, s);
  }

  // The local forward; the last stage's tp_rank 0 then sends the logits to rank 0 when that is
  // another rank. Returns this rank's logits (empty before the last stage).
  Result<std::span<const float>> forward(std::span<const ForwardSeq> seqs) {
    FS_ASSIGN_OR_RETURN(std::span<const float> logits, local_->forward(seqs));
    if (layout_.pp > 1 && layout_.last_stage() && layout_.tp_rank() == 0) {
      const LogitsMessage m = logits_message(seqs, local_->config().vocab_size,
                                             local_->supports_greedy_picks());
      if (!pipelined_ && m.pick_floats == 0) {  // the rows alone: sent from where they are
        check(world_->send({reinterpret_cast<const uint8_t*>(logits.data()), logits.size_bytes()},
                           0, kLogitsTag),
              "sending logits to rank 0");
        return logits;
      }
      std::vector<float> message = std::move(spare_logits_);
      message.resize(static_cast<size_t>(m.total()));
      if (m.pick_floats > 0) {
        std::memcpy(message.data(), local_->greedy_picks().data(), m.pick_floats * sizeof(float));
      }
      if (m.logit_floats > 0) {
        std::copy(logits.begin(), logits.end(), message.begin() + m.pick_floats);
      }
      if (pipelined_) {
        send_logits_async(std::move(message));
      } else {
        check(world_->send({reinterpret_cast<const uint8_t*>(message.data()),
                            message.size() * sizeof(float)},
                           0, kLogitsTag),
              "sending logits to rank 0");
        spare_logits_ = std::move(message);
      }
    }
    return logits;
  }

  // Pipelined: the last stage sends logits without waiting for their delivery (rank 0 may be busy
  // with stage 0 of another batch, outside MPI, so a blocking send would hold this stage until
  // then); the copies wait here until delivered. all: waits for every one (shutdown).
  void set_pipelined(bool pipelined) { pipelined_ = pipelined; }
  void reap_logits_sends(bool all) {
    while (!logits_sends_.empty()) {
      PendingLogits& p = logits_sends_.front();
      if (all || logits_sends_.size() > kMaxLogitsSends) {
        check(world_->wait_request(p.request, /*timed=*/true), "sending logits to rank 0");
      } else {
        Result<bool> done = world_->test_request(p.request);
        check(done.status(), "sending logits to rank 0");
        if (!*done) return;
      }
      spare_logits_ = std::move(p.logits);
      logits_sends_.pop_front();
    }
  }

 private:
  std::shared_ptr<Communicator> world_;
  std::unique_ptr<Communicator> tp_group_;  // CPU: the TP all-reduce over MPI
  ParallelLayout layout_;
  std::unique_ptr<CausalLm> lm_;            // CPU: the shard's model
  std::vector<std::unique_ptr<Communicator>> device_comms_;  // GPU: NCCL
  std::unique_ptr<Executor> local_;

  void send_logits_async(std::vector<float> message) {
    reap_logits_sends(/*all=*/false);
    PendingLogits& p = logits_sends_.emplace_back();
    p.logits = std::move(message);
    Result<Communicator::RequestId> r = world_->isend(
        {reinterpret_cast<const uint8_t*>(p.logits.data()), p.logits.size() * sizeof(float)}, 0,
        kLogitsTag);
    check(r.status(), "sending logits to rank 0");
    p.request = *r;
  }
  static constexpr size_t kMaxLogitsSends = 8;  // more undelivered: wait for the oldest
  struct PendingLogits {
    std::vector<float> logits;  // [rows, vocab], the copy being sent
    Communicator::RequestId request = -1;
  };
  bool pipelined_ = false;
  std::deque<PendingLogits> logits_sends_;
  std::vector<float> spare_logits_;
};

DistExecutor::DistExecutor(ModelConfig full_config, std::unique_ptr<ShardRunner> runner,
                           int micro_batches)
    : full_config_(std::move(full_config)),
      runner_(std::move(runner)),
      micro_batches_(micro_batches),
      pipelined_(runner_->layout().pp > 1 && micro_batches > 1) {}

DistExecutor::~DistExecutor() { shutdown(); }

std::string DistExecutor::device_name() const {
  const ParallelLayout& l = runner_->layout();
  const std::string local = runner_->local().device_name();
  const bool gpu = local.rfind("cuda", 0) == 0;
  return fmt::format("{} x {} ranks (tp {}, pp {}, {})", local, l.world_size(), l.tp, l.pp,
                     gpu ? "NCCL + MPI" : "MPI");
}

int64_t DistExecutor::weight_bytes() const { return runner_->local().weight_bytes(); }

bool DistExecutor::supports_greedy_picks() const {
  return runner_->local().supports_greedy_picks();
}

Executor::NominalSpeed DistExecutor::nominal_speed() const {
  return runner_->local().nominal_speed();
}

int64_t DistExecutor::max_device_blocks(int64_t block_size, int64_t max_batched_tokens) const {
  return runner_->local().max_device_blocks(block_size, max_batched_tokens);
}

int64_t DistExecutor::kv_block_bytes(int64_t block_size) const {
  return runner_->local().kv_block_bytes(block_size);
}

Status DistExecutor::send_command(int64_t command) {
  if (pipelined_) {
    reap_sends(/*all=*/false);
    PendingSend& p = sends_.emplace_back();
    p.words.reserve(2 + message_.size());
    p.words = {command, static_cast<int64_t>(message_.size())};
    p.words.insert(p.words.end(), message_.begin(), message_.end());
    const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(p.words.data()),
                                         p.words.size() * sizeof(int64_t));
    const ParallelLayout& l = runner_->layout();
    Communicator& world = runner_->world();
    for (int r = 1; r < l.world_size(); ++r) {
      Result<Communicator::RequestId> header = world.isend(bytes.first(2 * sizeof(int64_t)), r,
                                                           kCommandTag);
      runner_->check(header.status(), "sending a command");
      p.requests.push_back(*header);
      if (!message_.empty()) {
        Result<Communicator::RequestId> payload =
            world.isend(bytes.subspan(2 * sizeof(int64_t)), r, kCommandTag);
        runner_->check(payload.status(), "sending a command");
        p.requests.push_back(*payload);
      }
    }
    return Status::ok();
  }
  int64_t header[2] = {command, static_cast<int64_t>(message_.size())};
  runner_->check(runner_->world().broadcast(bytes_of(header), 0), "broadcasting a command");
  if (!message_.empty()) {
    runner_->check(runner_->world().broadcast(bytes_of(message_), 0), "broadcasting a command");
  }
  return Status::ok();
}

void DistExecutor::reap_sends(bool all) {
  Communicator& world = runner_->world();
  while (!sends_.empty()) {
    PendingSend& p = sends_.front();
    while (!p.requests.empty()) {
      if (all) {
        runner_->check(world.wait_request(p.requests.back(), /*timed=*/true),
                       "delivering a command");
        p.requests.pop_back();
        continue;
      }
      Result<bool> done = world.test_request(p.requests.back());
      runner_->check(done.status(), "delivering a command");
      if (!*done) return;  // later sends are not delivered either, most likely
      p.requests.pop_back();
    }
    sends_.pop_front();
  }
}

Status DistExecutor::allocate_kv(int64_t block_size, int64_t device_blocks, int64_t host_blocks) {
  message_ = {block_size, device_blocks, host_blocks};
  FS_RETURN_IF_ERROR(send_command(kAllocateKv));
  return runner_->local().allocate_kv(block_size, device_blocks, host_blocks);
}

Status DistExecutor::swap(std::span<const BlockCopy> offloads, std::span<const BlockCopy> uploads) {
  if (offloads.empty() && uploads.empty()) return Status::ok();
  message_.clear();
  encode_swap(offloads, uploads, message_);
  FS_RETURN_IF_ERROR(send_command(kSwap));
  return runner_->local().swap(offloads, uploads);
}

Result<std::span<const float>> DistExecutor::forward(std::span<const ForwardSeq> seqs) {
  if (pipelined_) {
    FS_CHECK(forwards_.empty(), "forward() with {} forwards outstanding", forwards_.size());
    forward_submit(seqs);
    return forward_wait();
  }
  message_.clear();
  encode_forward(seqs, message_);
  FS_RETURN_IF_ERROR(send_command(kForward));
  // Every rank validates the same inputs the same way: an error here is an error everywhere, and
  // no rank has started a collective.
  FS_ASSIGN_OR_RETURN(std::span<const float> logits, runner_->forward(seqs));
  if (runner_->layout().pp == 1) {
    picks_ = runner_->local().greedy_picks();
    return logits;
  }
  const ParallelLayout& l = runner_->layout();
  const LogitsMessage m = logits_message(seqs, full_config_.vocab_size, supports_greedy_picks());
  logits_.resize(m.total());
  runner_->check(runner_->world().recv(
                     {reinterpret_cast<uint8_t*>(logits_.data()), logits_.size() * sizeof(float)},
                     l.rank_of(l.pp - 1, 0), kLogitsTag),
                 "receiving logits from the last stage");
  const std::span<const float> out = unpack_logits(m, logits_, picks_store_);
  picks_ = picks_store_;
  return out;
}

// Stage 0 of the batch runs here, while the later stages may still work on earlier batches: its
// hidden states go to stage 1 as soon as stage 1 takes them (after its previous batch). The receive
// of the logits is posted before the next batch's stage-0 work, so the last stage's send of them
// never waits on rank 0 (which could be waiting on that stage to take hidden states: a deadlock).
void DistExecutor::forward_submit(std::span<const ForwardSeq> seqs) {
  if (!pipelined_) {
    Executor::forward_submit(seqs);
    return;
  }
  FS_CHECK(static_cast<int>(forwards_.size()) < micro_batches_, "{} forwards outstanding",
           forwards_.size());
  message_.clear();
  encode_forward(seqs, message_);
  PendingForward& f = forwards_.emplace_back();
  f.status = send_command(kForward);
  if (!f.status.is_ok()) return;
  // Every rank validates the same inputs the same way: an error here is an error everywhere, and
  // no rank has started a transfer of this batch.
  Result<std::span<const float>> local = runner_->forward(seqs);
  if (!local.is_ok()) {
    f.status = local.status();
    return;
  }
  if (!spare_logits_.empty()) {
    f.logits = std::move(spare_logits_.back());
    spare_logits_.pop_back();
  }
  f.message = logits_message(seqs, full_config_.vocab_size, supports_greedy_picks());
  f.logits.resize(f.message.total());
  const ParallelLayout& l = runner_->layout();
  Result<Communicator::RequestId> recv = runner_->world().irecv(
      {reinterpret_cast<uint8_t*>(f.logits.data()), f.logits.size() * sizeof(float)},
      l.rank_of(l.pp - 1, 0), kLogitsTag);
  runner_->check(recv.status(), "receiving logits from the last stage");
  f.request = *recv;
}

Result<std::span<const float>> DistExecutor::forward_wait() {
  if (!pipelined_) return Executor::forward_wait();
  FS_CHECK(!forwards_.empty(), "forward_wait without forward_submit");
  PendingForward f = std::move(forwards_.front());
  forwards_.pop_front();
  if (!f.status.is_ok()) return f.status;
  runner_->check(runner_->world().wait_request(f.request, /*timed=*/true),
                 "receiving logits from the last stage");
  reap_sends(/*all=*/false);
  spare_logits_.push_back(std::move(logits_));
  logits_ = std::move(f.logits);
  const std::span<const float> out = unpack_logits(f.message, logits_, picks_store_);
  picks_ = picks_store_;
  return out;
}

Status DistExecutor::set_kv_dtype(cpu::KvDtype dtype) { return runner_->set_kv_dtype(dtype); }

Status DistWorker::set_kv_dtype(cpu::KvDtype dtype) { return runner_->set_kv_dtype(dtype); }

void DistExecutor::shutdown() {
  if (shut_down_) return;
  while (!forwards_.empty()) (void)forward_wait();
  shut_down_ = true;
  message_.clear();
  (void)send_command(kShutdown);
  reap_sends(/*all=*/true);
}

DistWorker::DistWorker(std::unique_ptr<ShardRunner> runner, bool pipelined)
    : runner_(std::move(runner)), pipelined_(pipelined) {}

DistWorker::~DistWorker() = default;

Status DistWorker::run() {
  Communicator& world = runner_->world();
  std::vector<int64_t> payload;
  DecodedForward fwd;
  std::vector<BlockCopy> offloads, uploads;
  for (;;) {
    int64_t header[2] = {0, 0};
    if (pipelined_) {
      Result<Communicator::RequestId> r = world.irecv(bytes_of(header), 0, kCommandTag);
      runner_->check(r.status(), "waiting for rank 0's command");
      runner_->check(world.wait_request(*r, /*timed=*/false), "waiting for rank 0's command");
      payload.resize(static_cast<size_t>(header[1]));
      if (!payload.empty()) {
        runner_->check(world.recv(bytes_of(payload), 0, kCommandTag), "receiving rank 0's command");
      }
    } else {
      runner_->check(world.broadcast_untimed(bytes_of(header), 0), "waiting for rank 0's command");
      payload.resize(static_cast<size_t>(header[1]));
      if (!payload.empty()) {
        runner_->check(world.broadcast(bytes_of(payload), 0), "receiving rank 0's command");
      }
    }
    switch (static_cast<Command>(header[0])) {
      case kAllocateKv:
        FS_RETURN_IF_ERROR(runner_->local().allocate_kv(payload[0], payload[1], payload[2]));
        break;
      case kSwap:
        decode_swap(payload, offloads, uploads);
        if (Status s = runner_->local().swap(offloads, uploads); !s.is_ok()) {
          log_warn("rank {}: swap: {}", runner_->layout().rank, s.message());
        }
        break;
      case kForward:
        decode_forward(payload, fwd);
        if (Result<std::span<const float>> r = runner_->forward(fwd.seqs); !r.is_ok()) {
          // Rank 0 validated the same batch and reports the error to its requests.
          log_warn("rank {}: forward: {}", runner_->layout().rank, r.status().message());
        }
        break;
      case kShutdown:
        runner_->reap_logits_sends(/*all=*/true);
        return Status::ok();
      default:
        return make_error(StatusCode::kInternal, "rank {}: unknown command {} from rank 0",
                          runner_->layout().rank, header[0]);
    }
  }
}

namespace {

Result<int> check_world(std::shared_ptr<Communicator>& world, int tp, int pp, int micro_batches) {
  if (tp * pp != world->size()) {
    return invalid_argument(
        "--tp {} x --pp {} = {} ranks, but MPI started {} (run under mpirun -np {})", tp, pp,
        tp * pp, world->size(), tp * pp);
  }
  // More batches than stages leave slack for rank 0's sampling and scheduling between a batch's
  // logits and its next submission; each in-flight batch holds its jobs out of the others.
  if (micro_batches == 0) micro_batches = pp;
  if (micro_batches < 1 || micro_batches > 2 * pp) {
    return invalid_argument("--pp-micro-batches {}: must be between 1 and 2 x --pp ({})",
                            micro_batches, 2 * pp);
  }
  return micro_batches;
}

ParallelLayout make_layout(const ModelConfig& config, int tp, int pp, int rank, StageSplit split) {
  ParallelLayout layout{tp, pp, rank};
  if (pp > 1 && split == StageSplit::kBalanced) layout.head_layers = lm_head_layers(config, tp);
  return layout;
}

void log_shard(const ParallelLayout& layout, const ModelConfig& full, const ModelConfig& shard,
               int64_t weight_bytes) {
  log_info("rank {} (pid {}): {}, layers [{}, {}), {} heads, {} kv heads, {:.1f} MiB of weights",
           layout.rank, static_cast<int64_t>(getpid()), layout.to_string(),
           layout.layer_begin(layout.stage(), full.num_layers),
           layout.layer_end(layout.stage(), full.num_layers), shard.num_heads, shard.num_kv_heads,
           weight_bytes / 1048576.0);
}

// Rank 0 gets the executor, every other rank a worker.
DistSetup finish_setup(const ParallelLayout& layout, const ModelConfig& full_config,
                       std::unique_ptr<ShardRunner> runner, int micro_batches) {
  const bool pipelined = layout.pp > 1 && micro_batches > 1;
  runner->set_pipelined(pipelined);
  DistSetup setup;
  setup.layout = layout;
  if (layout.rank == 0) {
    setup.executor = std::make_unique<DistExecutor>(full_config, std::move(runner), micro_batches);
  } else {
    setup.worker = std::make_unique<DistWorker>(std::move(runner), pipelined);
  }
  return setup;
}

}  // namespace

Result<DistSetup> make_dist(const LoadedModel& model, std::shared_ptr<Communicator> world, int tp,
                            int pp, int micro_batches, StageSplit split) {
  FS_ASSIGN_OR_RETURN(micro_batches, check_world(world, tp, pp, micro_batches));
  const ParallelLayout layout = make_layout(model.config, tp, pp, world->rank(), split);
  FS_ASSIGN_OR_RETURN(LoadedModel shard, shard_model(model, layout));
  FS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> tp_group,
                      world->split(layout.stage(), layout.tp_rank()));
  log_shard(layout, model.config, shard.config, shard.weight_bytes);
  auto runner = std::make_unique<ShardRunner>(std::move(world), std::move(tp_group), layout,
                                              CausalLm::create(std::move(shard)));
  return finish_setup(layout, model.config, std::move(runner), micro_batches);
}

Result<DistSetup> make_dist_cuda(const LoadedModel* model, const ModelConfig& config,
                                 std::shared_ptr<Communicator> world, int tp, int pp,
                                 int micro_batches, StageSplit split) {
#ifndef FASTSERVE_WITH_NCCL
  (void)model, (void)config, (void)world, (void)tp, (void)pp, (void)micro_batches, (void)split;
  return unimplemented(
      "--tp/--pp with --device cuda: this fastserve was built without NCCL (install NCCL next to "
      "the CUDA toolkit and rebuild)");
#else
  FS_ASSIGN_OR_RETURN(micro_batches, check_world(world, tp, pp, micro_batches));
  const ParallelLayout layout = make_layout(config, tp, pp, world->rank(), split);
  FS_RETURN_IF_ERROR(check_layout(config, layout));
  FS_RETURN_IF_ERROR(select_rank_gpu(layout.rank));
  std::optional<LoadedModel> shard;
  if (model != nullptr) {
    FS_ASSIGN_OR_RETURN(LoadedModel s, shard_model(*model, layout));
    shard = std::move(s);
  }
  FS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> tp_group,
                      world->split(layout.stage(), layout.tp_rank()));
  FS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> pp_group,
                      world->split(layout.tp_rank(), layout.stage()));
  const ModelConfig local_config = shard_config(config, layout);
  FS_ASSIGN_OR_RETURN(CudaShard local, make_cuda_shard(shard ? &*shard : nullptr, config, layout,
                                                       *tp_group, *pp_group));
  log_shard(layout, config, local_config, local.executor->weight_bytes());
  auto runner = std::make_unique<ShardRunner>(std::move(world), layout, std::move(local.comms),
                                              std::move(local.executor));
  return finish_setup(layout, config, std::move(runner), micro_batches);
#endif
}

}  // namespace fs::dist
