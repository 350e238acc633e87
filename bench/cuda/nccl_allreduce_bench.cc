// The TP all-reduce's cost on its own: NCCL (NcclCommunicator::enqueue_all_reduce_sum) and the
// one-shot peer-memory all-reduce (cuda::P2pAllReduce) of a decode step's residual stream (batch x
// hidden f32) on each rank's GPU, as the forward issues them: `--count` back-to-back all-reduces on
// one stream, eager and replayed from a CUDA graph, timed with the stream synchronized at the end;
// per all-reduce microseconds (best of --repeat). Each is first checked once: x = rank + 1 + i
// everywhere must come back as the sum over ranks.
//   mpirun -np 2 nccl_allreduce_bench [--hidden 4096] [--batches 1,16,64,256] [--count 64]
//                                     [--p2p-blocks 16,64,132]   (one peer-memory grid each)
// Rank 0 prints a markdown table. NCCL_NVLS_ENABLE=0 (set by NcclCommunicator::create).
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cuda/p2p_allreduce.h"
#include "bench_util.h"
#include "dist/mpi_communicator.h"
#include "dist/nccl_communicator.h"

using fs::bench::check;
using fs::bench::now_s;

int main(int argc, char** argv) {
  fs::bench::set_tool_name("nccl_allreduce_bench");
  int64_t hidden = 4096, count = 64;
  int repeat = 20;
  std::vector<int64_t> batches = {1, 16, 64, 256};
  std::vector<int64_t> p2p_blocks = {16, 64, 132};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--hidden") hidden = std::atoll(argv[i + 1]);
    if (a == "--count") count = std::atoll(argv[i + 1]);
    if (a == "--repeat") repeat = std::atoi(argv[i + 1]);
    if (a == "--batches" || a == "--p2p-blocks") {
      std::vector<int64_t>& list = a == "--batches" ? batches : p2p_blocks;
      list.clear();
      std::stringstream ss(argv[i + 1]);
      for (std::string t; std::getline(ss, t, ',');) list.push_back(std::atoll(t.c_str()));
    }
  }
  fs::Result<std::unique_ptr<fs::dist::MpiCommunicator>> world =
      fs::dist::MpiCommunicator::init_world(&argc, &argv);
  check(world.status());
  const int rank = (*world)->rank();
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  int devices = 1;
  check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  check(cudaSetDevice((local ? std::atoi(local) : rank) % devices), "cudaSetDevice");
  fs::Result<std::unique_ptr<fs::dist::NcclCommunicator>> nccl =
      fs::dist::NcclCommunicator::create(**world, 60.0);
  check(nccl.status());
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  const auto all_gather = [&](std::span<const uint8_t> mine, std::span<uint8_t> all) {
    std::vector<uint8_t> buf(mine.size());
    for (int r = 0; r < (*world)->size(); ++r) {
      if (r == rank) buf.assign(mine.begin(), mine.end());
      FS_RETURN_IF_ERROR((*world)->broadcast(buf, r));
      std::copy(buf.begin(), buf.end(), all.begin() + r * mine.size());
    }
    return fs::Status::ok();
  };
  int64_t max_n = 0;
  for (const int64_t b : batches) max_n = std::max(max_n, b * hidden);
  // One peer-memory instance per grid size (--p2p-blocks): the first is the one checked below.
  std::vector<std::unique_ptr<fs::cuda::P2pAllReduce>> p2ps;
  for (const int64_t blocks : p2p_blocks) {
    fs::Result<std::unique_ptr<fs::cuda::P2pAllReduce>> made = fs::cuda::P2pAllReduce::create(
        rank, (*world)->size(), max_n, static_cast<int>(blocks), all_gather);
    check(made.status());
    p2ps.push_back(std::move(*made));
  }
  std::unique_ptr<fs::cuda::P2pAllReduce>& p2p = p2ps.front();
  // The peer-memory exchange areas rotate and are emptied per call: calls of changing sizes
  // (larger, smaller, odd: the scalar path) in a row, with -0.0 among the values, must each sum.
  {
    const int size = (*world)->size();
    float* x = nullptr;
    check(cudaMalloc(&x, max_n * sizeof(float)), "cudaMalloc");
    const int64_t sizes[] = {max_n, hidden, max_n, 7, max_n / 2, 1, max_n, std::min(max_n, hidden + 4), 5, max_n};
    for (int round = 0; round < 3; ++round) {
      for (const int64_t n : sizes) {
        std::vector<float> h(n);
        for (int64_t i = 0; i < n; ++i) h[i] = i % 5 == 0 ? -0.0f : static_cast<float>(rank + i % 89);
        check(cudaMemcpy(x, h.data(), n * sizeof(float), cudaMemcpyHostToDevice), "copy");
        check(p2p->enqueue(x, n, stream));
        check(cudaStreamSynchronize(stream), "sync");
        check(cudaMemcpy(h.data(), x, n * sizeof(float), cudaMemcpyDeviceToHost), "copy");
        for (int64_t i = 0; i < n; ++i) {
          const float want = i % 5 == 0 ? 0.0f
                                        : static_cast<float>(size * (size - 1) / 2 + size * (i % 89));
          if (h[i] != want) {
            fs::bench::die("p2p all-reduce of " + std::to_string(n) + " floats: wrong sum at " +
                           std::to_string(i) + ": " + std::to_string(h[i]) + " want " +
                           std::to_string(want));
          }
        }
      }
    }
    cudaFree(x);
    if (rank == 0) std::printf("p2p all-reduce: %zu calls of changing sizes summed right\n\n",
                               3 * std::size(sizes));
  }
  if (rank == 0) {
    std::printf("| batch x hidden | bytes | NCCL eager us | NCCL graph us |");
    for (const int64_t blocks : p2p_blocks) {
      std::printf(" p2p %lld blocks eager us | graph us |", static_cast<long long>(blocks));
    }
    std::printf("\n|---|---|---|---|");
    for (size_t k = 0; k < p2p_blocks.size(); ++k) std::printf("---|---|");
    std::printf("\n");
  }
  const int size = (*world)->size();
  for (const int64_t batch : batches) {
    const int64_t n = batch * hidden;
    float* x = nullptr;
    check(cudaMalloc(&x, n * sizeof(float)), "cudaMalloc");
    std::vector<std::array<double, 2>> us;  // per algorithm (NCCL, then each p2p): eager, graph
    for (size_t algo = 0; algo <= p2ps.size(); ++algo) {
      const std::string name =
          algo == 0 ? "NCCL" : "p2p (" + std::to_string(p2p_blocks[algo - 1]) + " blocks)";
      const auto one = [&] {
        if (algo == 0) {
          check((*nccl)->enqueue_all_reduce_sum(x, n, stream));
        } else {
          check(p2ps[algo - 1]->enqueue(x, n, stream));
        }
      };
      // Correctness: x[i] = rank + 1 + i (mod 97) on every rank sums to the same on every rank.
      std::vector<float> h(n);
      for (int64_t i = 0; i < n; ++i) h[i] = static_cast<float>(rank + 1 + i % 97);
      check(cudaMemcpy(x, h.data(), n * sizeof(float), cudaMemcpyHostToDevice), "copy");
      for (int rep = 0; rep < 3; ++rep) {  // three in a row: the buffers rotate
        one();
        check(cudaStreamSynchronize(stream), "sync");
        check(cudaMemcpy(h.data(), x, n * sizeof(float), cudaMemcpyDeviceToHost), "copy");
        double scale = 1;
        for (int k = 0; k < rep; ++k) scale *= size;
        for (int64_t i = 0; i < n; ++i) {
          const double want = scale * (size * (size + 1) / 2.0 + size * static_cast<double>(i % 97));
          if (h[i] != static_cast<float>(want)) {
            fs::bench::die(name + " all-reduce: wrong sum at " + std::to_string(i) + ": " +
                           std::to_string(h[i]) + " want " + std::to_string(want));
          }
        }
      }
      check(cudaMemset(x, 0, n * sizeof(float)), "cudaMemset");
      const auto run = [&] {
        for (int64_t k = 0; k < count; ++k) one();
      };
      double eager = 1e30, graphed = 1e30;
      for (int r = 0; r <= repeat; ++r) {
        check((*world)->barrier());
        const double t = now_s();
        run();
        check(cudaStreamSynchronize(stream), "sync");
        if (r > 0) eager = std::min(eager, now_s() - t);
      }
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
      run();
      check(cudaStreamEndCapture(stream, &graph), "end capture");
      check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
      for (int r = 0; r <= repeat; ++r) {
        check((*world)->barrier());
        const double t = now_s();
        check(cudaGraphLaunch(exec, stream), "launch");
        check(cudaStreamSynchronize(stream), "sync");
        if (r > 0) graphed = std::min(graphed, now_s() - t);
      }
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
      us.push_back({eager * 1e6 / count, graphed * 1e6 / count});
    }
    cudaFree(x);
    if (rank == 0) {
      std::printf("| %lld x %lld | %lld |", static_cast<long long>(batch),
                  static_cast<long long>(hidden), static_cast<long long>(n * 4));
      for (const auto& [eager_us, graph_us] : us) std::printf(" %.1f | %.1f |", eager_us, graph_us);
      std::printf("\n");
    }
  }
  std::fflush(stdout);
  cudaStreamDestroy(stream);
  return 0;
}
