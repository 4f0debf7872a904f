// The NCCL implementation of Communicator (DESIGN.md section 3): the same groups as the MPI ones, over device
// memory. Each communicator has its own stream; calls are ordered against the backend's compute stream with
// events (STYLE.md pitfall 3: no reliance on CUDA_DEVICE_MAX_CONNECTIONS), so the dp gradient reduction runs
// beside the backward pass and the tp collectives of that pass do not queue behind it.
#include <cstring>

#include "polyllama/core/backend.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/parallel/environment.hpp"
#include "polyllama/parallel/parallel.hpp"

#ifdef POLYLLAMA_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "polyllama/backend/cuda/cuda_backend.hpp"
#endif

namespace polyllama {

#ifdef POLYLLAMA_HAVE_NCCL

bool nccl_available() { return true; }

std::string nccl_version() {
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess || code <= 0) return "unknown";
  // NCCL_VERSION(X, Y, Z): X * 10000 + Y * 100 + Z since 2.9, X * 1000 + Y * 100 + Z before.
  const bool wide = code >= 10000;
  const int major = wide ? code / 10000 : code / 1000, minor = (wide ? code % 10000 : code % 1000) / 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(code % 100);
}

namespace {

[[noreturn]] void fail_nccl(ncclResult_t r, const char* expr, const char* file, int line) {
  fail_runtime(std::string("NCCL error ") + std::to_string(static_cast<int>(r)) + " (" + ncclGetErrorString(r) +
                   ") in " + expr + "; NCCL_DEBUG=WARN says more",
               file, line);
}
[[noreturn]] void fail_cudart(cudaError_t e, const char* expr, const char* file, int line) {
  fail_runtime(std::string("CUDA error ") + std::to_string(static_cast<int>(e)) + " (" + cudaGetErrorString(e) +
                   ") in " + expr,
               file, line);
}

#define PL_NCCL(expr)                                                             \
  do {                                                                            \
    const ncclResult_t pl_r_ = (expr);                                            \
    if (pl_r_ != ncclSuccess) fail_nccl(pl_r_, #expr, __FILE__, __LINE__);        \
  } while (0)
#define PL_CUDART(expr)                                                           \
  do {                                                                            \
    const cudaError_t pl_e_ = (expr);                                             \
    if (pl_e_ != cudaSuccess) fail_cudart(pl_e_, #expr, __FILE__, __LINE__);      \
  } while (0)

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::bf16:
      return ncclBfloat16;
    default:
      fail_input(std::string("NCCL collectives take f32, f64 or bf16 tensors, not ") + dtype_name(t));
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const MpiCommunicator& group, CudaBackend& be)
      : mpi_(group.comm()),
        rank_(group.rank()),
        size_(group.size()),
        compute_(static_cast<cudaStream_t>(be.stream_handle())) {
    PL_CUDART(cudaSetDevice(be.device()));
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (rank_ == 0) PL_NCCL(ncclGetUniqueId(&id));
    MPI_Bcast(&id, static_cast<int>(sizeof id), MPI_BYTE, 0, mpi_);
    PL_NCCL(ncclCommInitRank(&comm_, size_, id, rank_));
    int lo = 0, hi = 0;  // the highest priority: a collective ready to go should not wait behind compute kernels
    PL_CUDART(cudaDeviceGetStreamPriorityRange(&lo, &hi));
    PL_CUDART(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, hi));
    PL_CUDART(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    PL_CUDART(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~NcclCommunicator() override {  // never throws: teardown errors are ignored
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaEventDestroy(ready_);
    cudaEventDestroy(done_);
    cudaStreamDestroy(stream_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool host_memory() const override { return false; }

  void all_reduce(void* x, int64_t n, DType t, ReduceOp op) override {
    if (n == 0) return;  // a group of one still calls NCCL: the single-GPU tests exercise the real calls
    enter();
    count(Collective::all_reduce, static_cast<uint64_t>(n) * dtype_size(t));
    PL_NCCL(ncclAllReduce(x, x, static_cast<size_t>(n), nccl_type(t), op == ReduceOp::sum ? ncclSum : ncclMax, comm_,
                          stream_));
    leave();
  }

  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType t) override {
    PL_CHECK(static_cast<int>(counts.size()) == size_, "reduce_scatter needs one count per member");
    const size_t es = dtype_size(t);
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    enter();
    if (equal(counts)) {
      count(Collective::reduce_scatter, static_cast<uint64_t>(total) * es);
      PL_NCCL(ncclReduceScatter(send, recv, static_cast<size_t>(counts[0]), nccl_type(t), ncclSum, comm_, stream_));
    } else {  // uneven pieces: one reduce per owner, fused into one launch by the group
      count(Collective::reduce_scatter, static_cast<uint64_t>(total) * es);
      PL_NCCL(ncclGroupStart());
      size_t off = 0;
      for (int r = 0; r < size_; ++r) {
        const auto n = static_cast<size_t>(counts[static_cast<size_t>(r)]);
        PL_NCCL(ncclReduce(static_cast<const char*>(send) + off * es, recv, n, nccl_type(t), ncclSum, r, comm_,
                           stream_));
        off += n;
      }
      PL_NCCL(ncclGroupEnd());
    }
    leave();
  }

  void all_gather(void* buf, const std::vector<int64_t>& counts, DType t) override {
    PL_CHECK(static_cast<int>(counts.size()) == size_, "all_gather needs one count per member");
    const size_t es = dtype_size(t);
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    char* b = static_cast<char*>(buf);
    enter();
    count(Collective::all_gather, static_cast<uint64_t>(total) * es);
    if (equal(counts)) {  // in place: this member's piece already sits at its offset of the output
      const auto n = static_cast<size_t>(counts[0]);
      PL_NCCL(ncclAllGather(b + static_cast<size_t>(rank_) * n * es, b, n, nccl_type(t), comm_, stream_));
    } else {
      PL_NCCL(ncclGroupStart());
      size_t off = 0;
      for (int r = 0; r < size_; ++r) {
        const auto n = static_cast<size_t>(counts[static_cast<size_t>(r)]);
        PL_NCCL(ncclBroadcast(b + off * es, b + off * es, n, nccl_type(t), r, comm_, stream_));
        off += n;
      }
      PL_NCCL(ncclGroupEnd());
    }
    leave();
  }

  void broadcast(void* x, int64_t n, DType t, int root) override {
    if (n == 0) return;
    enter();
    count(Collective::broadcast, static_cast<uint64_t>(n) * dtype_size(t));
    PL_NCCL(ncclBroadcast(x, x, static_cast<size_t>(n), nccl_type(t), root, comm_, stream_));
    leave();
  }

  void barrier() override {
    PL_CUDART(cudaStreamSynchronize(compute_));
    PL_CUDART(cudaStreamSynchronize(stream_));
    if (size_ > 1) MPI_Barrier(mpi_);
  }

  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0 || dst == src) return;
    enter();
    PL_CUDART(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
    leave();
  }

  void begin_overlap() override { overlap_ = true; }
  void end_overlap() override {
    overlap_ = false;
    join();
  }

 private:
  static bool equal(const std::vector<int64_t>& c) {
    for (int64_t n : c)
      if (n != c[0]) return false;
    return true;
  }
  // The call starts after the compute issued so far ...
  void enter() {
    PL_CUDART(cudaEventRecord(ready_, compute_));
    PL_CUDART(cudaStreamWaitEvent(stream_, ready_, 0));
  }
  // ... and, outside an overlap window, the compute issued next starts after it.
  void leave() {
    if (!overlap_) join();
  }
  void join() {
    PL_CUDART(cudaEventRecord(done_, stream_));
    PL_CUDART(cudaStreamWaitEvent(compute_, done_, 0));
  }

  MPI_Comm mpi_;  // the bootstrap group (not owned): barrier()
  int rank_, size_;
  cudaStream_t compute_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  ncclComm_t comm_ = nullptr;
  bool overlap_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const MpiCommunicator& group, Backend& backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (!cuda)
    fail_input(std::string("NCCL communicators serve the cuda backend, not ") + backend.name());
  return std::make_unique<NcclCommunicator>(group, *cuda);
}

#else  // built without NCCL

bool nccl_available() { return false; }

std::string nccl_version() { return ""; }

std::unique_ptr<Communicator> make_nccl_communicator(const MpiCommunicator&, Backend& backend) {
  fail_input(std::string("more than one rank on the ") + backend.name() +
             " backend needs NCCL, and this polyllama was built without it (configure with NCCL beside the CUDA "
             "toolkit, or -DNCCL_ROOT=PREFIX holding include/nccl.h and lib/libnccl.so)");
}

#endif

}  // namespace polyllama
