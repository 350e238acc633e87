#include "dist/mpi_communicator.h"

#ifdef FASTSERVE_WITH_MPI

#include <chrono>
#include <climits>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/log.h"

namespace fs::dist {
namespace {

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, len);
}

Status mpi_error(int code, const char* what) {
  return make_error(StatusCode::kInternal, "MPI {} failed: {}", what, mpi_error_text(code));
}

Result<int> checked_count(size_t n, const char* what) {
  if (n > static_cast<size_t>(INT_MAX)) {
    return invalid_argument("MPI {}: {} elements exceed one call's limit", what, n);
  }
  return static_cast<int>(n);
}

}  // namespace

Result<std::unique_ptr<MpiCommunicator>> MpiCommunicator::init_world(int* argc, char*** argv) {
  int provided = 0;
  if (int rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided); rc != MPI_SUCCESS) {
    return make_error(StatusCode::kUnavailable, "MPI_Init_thread failed: {}", mpi_error_text(rc));
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    return make_error(StatusCode::kUnavailable,
                      "this MPI library does not allow calls from a thread other than main "
                      "(MPI_THREAD_SERIALIZED), which the engine thread needs");
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return std::unique_ptr<MpiCommunicator>(
      new MpiCommunicator(MPI_COMM_WORLD, /*owns_world=*/true, timeout_from_env_s()));
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, bool owns_world, double timeout_s)
    : comm_(comm), owns_world_(owns_world), timeout_s_(timeout_s) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  if (owns_world_) {
    MPI_Finalize();
  } else {
    MPI_Comm_free(&comm_);
  }
}

Status MpiCommunicator::wait(MPI_Request& request, const char* what, double timeout_s) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  for (int polls = 0;; ++polls) {
    int done = 0;
    if (int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE); rc != MPI_SUCCESS) {
      return mpi_error(rc, what);
    }
    if (done) return Status::ok();
    if (polls < 2000) {  // short waits (an all-reduce between busy ranks): stay responsive
      std::this_thread::yield();
      continue;
    }
    if (timeout_s > 0 && std::chrono::duration<double>(Clock::now() - start).count() > timeout_s) {
      return make_error(StatusCode::kUnavailable,
                        "MPI {} did not complete within {:.0f} s (FASTSERVE_DIST_TIMEOUT_S): a "
                        "peer rank died or hangs",
                        what, timeout_s);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

Status MpiCommunicator::all_reduce_sum(std::span<float> data) {
  FS_ASSIGN_OR_RETURN(int n, checked_count(data.size(), "all_reduce"));
  MPI_Request req;
  if (int rc = MPI_Iallreduce(MPI_IN_PLACE, data.data(), n, MPI_FLOAT, MPI_SUM, comm_, &req);
      rc != MPI_SUCCESS) {
    return mpi_error(rc, "all_reduce");
  }
  return wait(req, "all_reduce", timeout_s_);
}

Status MpiCommunicator::all_gather(std::span<const float> send, std::span<float> recv) {
  if (recv.size() != send.size() * static_cast<size_t>(size_)) {
    return invalid_argument("all_gather: recv holds {} floats, needs {} x {}", recv.size(), size_,
                            send.size());
  }
  FS_ASSIGN_OR_RETURN(int n, checked_count(recv.size(), "all_gather"));
  MPI_Request req;
  if (int rc = MPI_Iallgather(send.data(), n / size_, MPI_FLOAT, recv.data(), n / size_, MPI_FLOAT,
                              comm_, &req);
      rc != MPI_SUCCESS) {
    return mpi_error(rc, "all_gather");
  }
  return wait(req, "all_gather", timeout_s_);
}

Status MpiCommunicator::broadcast(std::span<uint8_t> bytes, int root) {
  FS_ASSIGN_OR_RETURN(int n, checked_count(bytes.size(), "broadcast"));
  MPI_Request req;
  if (int rc = MPI_Ibcast(bytes.data(), n, MPI_BYTE, root, comm_, &req); rc != MPI_SUCCESS) {
    return mpi_error(rc, "broadcast");
  }
  return wait(req, "broadcast", timeout_s_);
}

Status MpiCommunicator::broadcast_untimed(std::span<uint8_t> bytes, int root) {
  FS_ASSIGN_OR_RETURN(int n, checked_count(bytes.size(), "broadcast"));
  MPI_Request req;
  if (int rc = MPI_Ibcast(bytes.data(), n, MPI_BYTE, root, comm_, &req); rc != MPI_SUCCESS) {
    return mpi_error(rc, "broadcast");
  }
  return wait(req, "broadcast", 0);
}

Status MpiCommunicator::send(std::span<const uint8_t> bytes, int dst, int tag) {
  FS_ASSIGN_OR_RETURN(int n, checked_count(bytes.size(), "send"));
  MPI_Request req;
  if (int rc = MPI_Isend(bytes.data(), n, MPI_BYTE, dst, tag, comm_, &req); rc != MPI_SUCCESS) {
    return mpi_error(rc, "send");
  }
  return wait(req, "send", timeout_s_);
}

Status MpiCommunicator::recv(std::span<uint8_t> bytes, int src, int tag) {
  FS_ASSIGN_OR_RETURN(int n, checked_count(bytes.size(), "recv"));
  MPI_Request req;
  if (int rc = MPI_Irecv(bytes.data(), n, MPI_BYTE, src, tag, comm_, &req); rc != MPI_SUCCESS) {
    return mpi_error(rc, "recv");
  }
  return wait(req, "recv", timeout_s_);
}

Result<Communicator::RequestId> MpiCommunicator::isend(std::span<const uint8_t> bytes, int dst,
                                                      int tag) {
  FS_ASSIGN_OR_RETURN(int n, checked_count(bytes.size(), "isend"));
  MPI_Request req;
  if (int rc = MPI_Isend(bytes.data(), n, MPI_BYTE, dst, tag, comm_, &req); rc != MPI_SUCCESS) {
    return mpi_error(rc, "isend");
  }
  requests_.emplace(next_request_, req);
  return next_request_++;
}

Result<Communicator::RequestId> MpiCommunicator::irecv(std::span<uint8_t> bytes, int src, int tag) {
  FS_ASSIGN_OR_RETURN(int n, checked_count(bytes.size(), "irecv"));
  MPI_Request req;
  if (int rc = MPI_Irecv(bytes.data(), n, MPI_BYTE, src, tag, comm_, &req); rc != MPI_SUCCESS) {
    return mpi_error(rc, "irecv");
  }
  requests_.emplace(next_request_, req);
  return next_request_++;
}

Status MpiCommunicator::wait_request(RequestId id, bool timed) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return invalid_argument("wait_request: unknown request {}", id);
  MPI_Request req = it->second;
  requests_.erase(it);
  return wait(req, "point-to-point transfer", timed ? timeout_s_ : 0);
}

Result<bool> MpiCommunicator::test_request(RequestId id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return invalid_argument("test_request: unknown request {}", id);
  int done = 0;
  if (int rc = MPI_Test(&it->second, &done, MPI_STATUS_IGNORE); rc != MPI_SUCCESS) {
    return mpi_error(rc, "test");
  }
  if (done) requests_.erase(it);
  return done != 0;
}

Status MpiCommunicator::barrier() {
  MPI_Request req;
  if (int rc = MPI_Ibarrier(comm_, &req); rc != MPI_SUCCESS) return mpi_error(rc, "barrier");
  return wait(req, "barrier", timeout_s_);
}

Result<std::unique_ptr<Communicator>> MpiCommunicator::split(int color, int key) {
  MPI_Comm sub;
  if (int rc = MPI_Comm_split(comm_, color, key, &sub); rc != MPI_SUCCESS) {
    return mpi_error(rc, "comm_split");
  }
  MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN);
  return std::unique_ptr<Communicator>(new MpiCommunicator(sub, /*owns_world=*/false, timeout_s_));
}

}  // namespace fs::dist

#endif  // FASTSERVE_WITH_MPI
