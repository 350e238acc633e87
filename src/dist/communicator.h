// The collectives the distributed executor needs, over a group of ranks: MPI on the CPU (and to
// bootstrap across hosts), NCCL for GPU buffers (nccl_communicator.h, built when nccl.h is found).
// Every call is collective or point-to-point as named; all ranks of the group must make the same
// collective calls in the same order. Errors: a peer that does not take part within the
// communicator's timeout (it died or hangs) gives kUnavailable naming the call; a transport
// error gives kInternal with the library's message. After an error the group is unusable: the
// caller reports it and exits (dist::fatal).
// Not thread-safe: one caller thread per communicator.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "core/status.h"

namespace fs::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;  // 0 .. size() - 1
  virtual int size() const = 0;

  // data = sum of every rank's data, on every rank.
  virtual Status all_reduce_sum(std::span<float> data) = 0;
  // recv [size(), send.size()] = every rank's send, in rank order. recv.size() == size() *
  // send.size().
  virtual Status all_gather(std::span<const float> send, std::span<float> recv) = 0;
  // bytes of `root` to every rank (all pass the same size).
  virtual Status broadcast(std::span<uint8_t> bytes, int root) = 0;
  // As broadcast, without the timeout: a worker waiting for rank 0's next command may wait forever
  // (an idle server sends none).
  virtual Status broadcast_untimed(std::span<uint8_t> bytes, int root) = 0;
  virtual Status send(std::span<const uint8_t> bytes, int dst, int tag) = 0;
  virtual Status recv(std::span<uint8_t> bytes, int src, int tag) = 0;

  // Non-blocking point-to-point (pipeline parallelism): starts the transfer and returns a handle
  // for wait_request / test_request; `bytes` must stay valid (and unchanged, for isend) until the
  // transfer completed. Messages from one rank to another with one tag are received in the order
  // they were sent, by receives in the order they were started (MPI's non-overtaking rule).
  // Default: kUnimplemented (NCCL has no tags).
  using RequestId = int64_t;
  virtual Result<RequestId> isend(std::span<const uint8_t> /*bytes*/, int /*dst*/, int /*tag*/) {
    return unimplemented("isend is not implemented by this communicator");
  }
  virtual Result<RequestId> irecv(std::span<uint8_t> /*bytes*/, int /*src*/, int /*tag*/) {
    return unimplemented("irecv is not implemented by this communicator");
  }
  // Waits until the transfer completed (timed: within the communicator's timeout, else
  // kUnavailable; untimed: for ever, as a worker waits for rank 0's next command). The handle is
  // released either way.
  virtual Status wait_request(RequestId /*id*/, bool /*timed*/) {
    return unimplemented("wait_request is not implemented by this communicator");
  }
  // true (and the handle released) when the transfer completed; false while it is in progress.
  virtual Result<bool> test_request(RequestId /*id*/) {
    return unimplemented("test_request is not implemented by this communicator");
  }
  virtual Status barrier() = 0;
  // A communicator over the ranks that pass the same color, ranked by key (collective).
  virtual Result<std::unique_ptr<Communicator>> split(int color, int key) = 0;
};

// FASTSERVE_DIST_TIMEOUT_S (default 60): how long a timed call waits for its peers.
double timeout_from_env_s();

// Logs "rank R: <what>: <status>" and exits the process with status 1: a collective that failed
// leaves the group in no state to continue, and mpirun then stops the other ranks.
[[noreturn]] void fatal(int rank, const char* what, const Status& status);

}  // namespace fs::dist
