// Communicator over MPI (OpenMPI): the CPU ranks' collectives, and the bootstrap of GPU ranks.
// Every call starts a non-blocking MPI operation and polls it (yielding, then sleeping 100 us), so
// that a rank waiting for its peers leaves the CPU to them (2-core machines run 2 ranks) and gives
// up after the timeout with a message instead of hanging when a peer died.
#pragma once

#ifdef FASTSERVE_WITH_MPI

#include <memory>
#include <unordered_map>

#include <mpi.h>

#include "dist/communicator.h"

namespace fs::dist {

class MpiCommunicator final : public Communicator {
 public:
  // MPI_Init_thread (MPI_THREAD_SERIALIZED: the engine thread makes the calls after the main thread
  // initialised MPI) and MPI_COMM_WORLD with errors returned, not fatal. The timeout of every
  // timed call is FASTSERVE_DIST_TIMEOUT_S (default 60 s). The world communicator finalizes MPI
  // when destroyed. kUnavailable when MPI cannot start.
  static Result<std::unique_ptr<MpiCommunicator>> init_world(int* argc, char*** argv);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  double timeout_s() const { return timeout_s_; }
  void set_timeout_s(double seconds) { timeout_s_ = seconds; }

  Status all_reduce_sum(std::span<float> data) override;
  Status all_gather(std::span<const float> send, std::span<float> recv) override;
  Status broadcast(std::span<uint8_t> bytes, int root) override;
  Status broadcast_untimed(std::span<uint8_t> bytes, int root) override;
  Status send(std::span<const uint8_t> bytes, int dst, int tag) override;
  Status recv(std::span<uint8_t> bytes, int src, int tag) override;
  Result<RequestId> isend(std::span<const uint8_t> bytes, int dst, int tag) override;
  Result<RequestId> irecv(std::span<uint8_t> bytes, int src, int tag) override;
  Status wait_request(RequestId id, bool timed) override;
  Result<bool> test_request(RequestId id) override;
  Status barrier() override;
  Result<std::unique_ptr<Communicator>> split(int color, int key) override;

 private:
  MpiCommunicator(MPI_Comm comm, bool owns_world, double timeout_s);
  // Polls `request` until it completes, fails, or timeout_s passes (<= 0: no limit).
  Status wait(MPI_Request& request, const char* what, double timeout_s);

  MPI_Comm comm_;
  bool owns_world_;  // MPI_COMM_WORLD: MPI_Finalize on destruction; else MPI_Comm_free
  int rank_ = 0, size_ = 1;
  double timeout_s_;
  std::unordered_map<RequestId, MPI_Request> requests_;  // started by isend / irecv
  RequestId next_request_ = 1;
};

}  // namespace fs::dist

#endif  // FASTSERVE_WITH_MPI
