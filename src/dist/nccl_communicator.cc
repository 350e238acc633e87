#include "dist/nccl_communicator.h"

#ifdef FASTSERVE_WITH_NCCL

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace fs::dist {
namespace {

Status nccl_error(ncclResult_t r, const char* what) {
  return make_error(StatusCode::kUnavailable, "NCCL {} failed: {}", what, ncclGetErrorString(r));
}

Status cuda_error(cudaError_t e, const char* what) {
  return make_error(StatusCode::kUnavailable, "CUDA {} failed: {}", what, cudaGetErrorString(e));
}

}  // namespace

Result<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create(Communicator& bootstrap,
                                                                   double timeout_s) {
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (bootstrap.rank() == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      return nccl_error(r, "GetUniqueId");
    }
  }
  FS_RETURN_IF_ERROR(
      bootstrap.broadcast({reinterpret_cast<uint8_t*>(&id), sizeof(id)}, /*root=*/0));
  cudaStream_t stream;
  if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking); e != cudaSuccess) {
    return cuda_error(e, "StreamCreate");
  }
  ncclComm_t comm;
  if (ncclResult_t r = ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank());
      r != ncclSuccess) {
    cudaStreamDestroy(stream);
    return nccl_error(r, "CommInitRank");
  }
  auto c = std::unique_ptr<NcclCommunicator>(new NcclCommunicator(comm, stream, timeout_s));
  if (cudaError_t e = cudaMalloc(&c->barrier_word_, sizeof(float)); e != cudaSuccess) {
    return cuda_error(e, "Malloc");
  }
  return c;
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, cudaStream_t stream, double timeout_s)
    : comm_(comm), stream_(stream), timeout_s_(timeout_s) {
  ncclCommUserRank(comm_, &rank_);
  ncclCommCount(comm_, &size_);
}

NcclCommunicator::~NcclCommunicator() {
  if (barrier_word_ != nullptr) cudaFree(barrier_word_);
  ncclCommDestroy(comm_);
  cudaStreamDestroy(stream_);
}

Status NcclCommunicator::finish(ncclResult_t launched, const char* what, double timeout_s) {
  if (launched != ncclSuccess && launched != ncclInProgress) return nccl_error(launched, what);
  return wait_stream(stream_, what, timeout_s);
}

Status NcclCommunicator::wait_stream(cudaStream_t stream, const char* what, double timeout_s) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  for (;;) {
    const cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return Status::ok();
    if (q != cudaErrorNotReady) return cuda_error(q, what);
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async);
    if (async != ncclSuccess && async != ncclInProgress) {
      ncclCommAbort(comm_);
      return nccl_error(async, what);
    }
    if (timeout_s > 0 && std::chrono::duration<double>(Clock::now() - start).count() > timeout_s) {
      ncclCommAbort(comm_);
      return make_error(StatusCode::kUnavailable,
                        "NCCL {} did not complete within {:.0f} s: a peer rank died or hangs", what,
                        timeout_s);
    }
    // Spin (yielding) while a wait is short, as cudaStreamSynchronize would: a sleep costs ~60 us,
    // a good part of a decode step. Longer waits sleep.
    if (Clock::now() - start < std::chrono::milliseconds(100)) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
}

Status NcclCommunicator::enqueue_all_reduce_sum(float* data, int64_t count, cudaStream_t stream) {
  const ncclResult_t r =
      ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat32, ncclSum, comm_, stream);
  return r == ncclSuccess || r == ncclInProgress ? Status::ok() : nccl_error(r, "all_reduce");
}

Status NcclCommunicator::enqueue_send(const float* data, int64_t count, int dst,
                                      cudaStream_t stream) {
  const ncclResult_t r = ncclSend(data, static_cast<size_t>(count), ncclFloat32, dst, comm_, stream);
  return r == ncclSuccess || r == ncclInProgress ? Status::ok() : nccl_error(r, "send");
}

Status NcclCommunicator::enqueue_recv(float* data, int64_t count, int src, cudaStream_t stream) {
  const ncclResult_t r = ncclRecv(data, static_cast<size_t>(count), ncclFloat32, src, comm_, stream);
  return r == ncclSuccess || r == ncclInProgress ? Status::ok() : nccl_error(r, "recv");
}

Status NcclCommunicator::all_reduce_sum(std::span<float> data) {
  return finish(
      ncclAllReduce(data.data(), data.data(), data.size(), ncclFloat32, ncclSum, comm_, stream_),
      "all_reduce", timeout_s_);
}

Status NcclCommunicator::all_gather(std::span<const float> send, std::span<float> recv) {
  if (recv.size() != send.size() * static_cast<size_t>(size_)) {
    return invalid_argument("all_gather: recv holds {} floats, needs {} x {}", recv.size(), size_,
                            send.size());
  }
  return finish(ncclAllGather(send.data(), recv.data(), send.size(), ncclFloat32, comm_, stream_),
                "all_gather", timeout_s_);
}

Status NcclCommunicator::broadcast(std::span<uint8_t> bytes, int root) {
  return finish(
      ncclBroadcast(bytes.data(), bytes.data(), bytes.size(), ncclUint8, root, comm_, stream_),
      "broadcast", timeout_s_);
}

Status NcclCommunicator::broadcast_untimed(std::span<uint8_t> bytes, int root) {
  return finish(
      ncclBroadcast(bytes.data(), bytes.data(), bytes.size(), ncclUint8, root, comm_, stream_),
      "broadcast", 0);
}

Status NcclCommunicator::send(std::span<const uint8_t> bytes, int dst, int /*tag*/) {
  return finish(ncclSend(bytes.data(), bytes.size(), ncclUint8, dst, comm_, stream_), "send",
                timeout_s_);
}

Status NcclCommunicator::recv(std::span<uint8_t> bytes, int src, int /*tag*/) {
  return finish(ncclRecv(bytes.data(), bytes.size(), ncclUint8, src, comm_, stream_), "recv",
                timeout_s_);
}

Status NcclCommunicator::barrier() {
  return finish(
      ncclAllReduce(barrier_word_, barrier_word_, 1, ncclFloat32, ncclSum, comm_, stream_),
      "barrier", timeout_s_);
}

Result<std::unique_ptr<Communicator>> NcclCommunicator::split(int color, int key) {
  ncclComm_t sub;
  if (ncclResult_t r = ncclCommSplit(comm_, color, key, &sub, nullptr); r != ncclSuccess) {
    return nccl_error(r, "CommSplit");
  }
  cudaStream_t stream;
  if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking); e != cudaSuccess) {
    ncclCommDestroy(sub);
    return cuda_error(e, "StreamCreate");
  }
  auto c = std::unique_ptr<NcclCommunicator>(new NcclCommunicator(sub, stream, timeout_s_));
  if (cudaError_t e = cudaMalloc(&c->barrier_word_, sizeof(float)); e != cudaSuccess) {
    return cuda_error(e, "Malloc");
  }
  return std::unique_ptr<Communicator>(std::move(c));
}

}  // namespace fs::dist

#endif  // FASTSERVE_WITH_NCCL
