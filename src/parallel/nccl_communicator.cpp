// The NCCL implementation of Communicator (DESIGN.md section 3): the same groups as the MPI ones, over device
// memory. Each communicator has its own stream; calls are ordered against the backend's compute stream with
// events (STYLE.md pitfall 3: no reliance on CUDA_DEVICE_MAX_CONNECTIONS), so the dp gradient reduction runs
// beside the backward pass and the tp collectives of that pass do not queue behind it.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "polyllama/core/backend.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/parallel/environment.hpp"
#include "polyllama/parallel/parallel.hpp"

#ifdef POLYLLAMA_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "polyllama/backend/cuda/cuda_backend.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/parallel/watchdog.hpp"
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
  NcclCommunicator(const MpiCommunicator& group, CudaBackend& be, const std::string& label)
      : mpi_(group.comm()),
        rank_(group.rank()),
        size_(group.size()),
        device_(be.device()),
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
    const double timeout = nccl_timeout_from_env();
    if (timeout > 0) {
      char name[96];
      std::snprintf(name, sizeof name, "%s of %d (member %d)", label.c_str(), size_, rank_);
      watchdog_ = std::make_unique<CollectiveWatchdog>(
          name, CollectiveWatchdog::Options{timeout, 0.05},
          [this] {
            ncclResult_t r = ncclSuccess;
            if (ncclCommGetAsyncError(comm_, &r) != ncclSuccess || r == ncclSuccess || r == ncclInProgress)
              return std::string();
            return std::string(ncclGetErrorString(r)) + " (NCCL_DEBUG=WARN says more)";
          },
          [this](const std::string& msg) {
            // Not an exception: this is the watchdog's thread, and the main thread may be stuck in a
            // synchronisation that only the abort releases. Every rank ends (mpirun and srun see exit 2).
            log_warn(msg + "; aborting the communicator and the job");
            // The main thread may also be inside the NCCL call itself (see Watch), and the calls of a blocking
            // communicator are not thread-safe: should ncclCommAbort not return, the job still ends.
            std::thread([] {
              std::this_thread::sleep_for(std::chrono::seconds(10));
              MPI_Abort(MPI_COMM_WORLD, 2);
            }).detach();
            ncclCommAbort(comm_);
            MPI_Abort(MPI_COMM_WORLD, 2);
          });
    }
  }
  ~NcclCommunicator() override {  // never throws: teardown errors are ignored
    watchdog_.reset();  // before the communicator it polls goes away
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
    Watch w(*this, "all_reduce", static_cast<uint64_t>(n) * dtype_size(t), t);
    PL_NCCL(ncclAllReduce(x, x, static_cast<size_t>(n), nccl_type(t), op == ReduceOp::sum ? ncclSum : ncclMax, comm_,
                          stream_));
    w.enqueued();
    leave();
  }

  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType t) override {
    PL_CHECK(static_cast<int>(counts.size()) == size_, "reduce_scatter needs one count per member");
    const size_t es = dtype_size(t);
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    enter();
    Watch w(*this, "reduce_scatter", static_cast<uint64_t>(total) * es, t);
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
    w.enqueued();
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
    Watch w(*this, "all_gather", static_cast<uint64_t>(total) * es, t);
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
    w.enqueued();
    leave();
  }

  void broadcast(void* x, int64_t n, DType t, int root) override {
    if (n == 0) return;
    enter();
    count(Collective::broadcast, static_cast<uint64_t>(n) * dtype_size(t));
    Watch w(*this, "broadcast", static_cast<uint64_t>(n) * dtype_size(t), t);
    PL_NCCL(ncclBroadcast(x, x, static_cast<size_t>(n), nccl_type(t), root, comm_, stream_));
    w.enqueued();
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
  // One collective under the watchdog, handed to it before its NCCL call: the call itself can block on the host
  // (NCCL connects peers on a collective's first use, NCCL_RUNTIME_CONNECT, and waits there for them), so a peer
  // that never comes hangs the call, not the stream, and the timeout must already run. Once the call returned,
  // an event after it on the stream says when it finished (queried from the watchdog's thread, which sets this
  // device first: the current device is per thread). A call that threw leaves the watch: its error is reported.
  class Watch {
   public:
    Watch(NcclCommunicator& c, const char* op, uint64_t bytes, DType t) : c_(c) {
      if (!c.watchdog_) return;
      auto s = std::make_shared<Shared>();
      PL_CUDART(cudaEventCreateWithFlags(&s->event, cudaEventDisableTiming));
      char what[96];
      std::snprintf(what, sizeof what, "%s of %.3f MiB %s", op, static_cast<double>(bytes) / 1048576.0,
                    dtype_name(t));
      const int device = c.device_;
      c.watchdog_->issued(what, [s, device](std::string* error) {
        const int phase = s->phase.load(std::memory_order_acquire);
        if (phase == kThrew) return CollectiveWatchdog::State::done;
        if (phase == kInCall) return CollectiveWatchdog::State::pending;
        cudaSetDevice(device);
        const cudaError_t e = cudaEventQuery(s->event);
        if (e == cudaSuccess) return CollectiveWatchdog::State::done;
        if (e == cudaErrorNotReady) return CollectiveWatchdog::State::pending;
        *error = std::string("CUDA error ") + cudaGetErrorString(e);
        return CollectiveWatchdog::State::failed;
      });
      shared_ = std::move(s);
    }
    // The NCCL call returned: the collective is on the stream.
    void enqueued() {
      if (!shared_) return;
      PL_CUDART(cudaEventRecord(shared_->event, c_.stream_));
      shared_->phase.store(kOnStream, std::memory_order_release);
    }
    ~Watch() {
      if (shared_ && shared_->phase.load(std::memory_order_acquire) == kInCall)
        shared_->phase.store(kThrew, std::memory_order_release);
    }
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

   private:
    static constexpr int kInCall = 0, kOnStream = 1, kThrew = 2;
    struct Shared {  // between the calling thread and the watchdog's; the last one to let go destroys the event
      std::atomic<int> phase{kInCall};
      cudaEvent_t event = nullptr;
      ~Shared() {
        if (event) cudaEventDestroy(event);
      }
    };
    NcclCommunicator& c_;
    std::shared_ptr<Shared> shared_;
  };

  MPI_Comm mpi_;  // the bootstrap group (not owned): barrier()
  int rank_, size_, device_;
  cudaStream_t compute_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  ncclComm_t comm_ = nullptr;
  bool overlap_ = false;
  std::unique_ptr<CollectiveWatchdog> watchdog_;  // last member: destroyed first (the destructor also resets it)
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const MpiCommunicator& group, Backend& backend,
                                                     const std::string& label) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (!cuda)
    fail_input(std::string("NCCL communicators serve the cuda backend, not ") + backend.name());
  return std::make_unique<NcclCommunicator>(group, *cuda, label);
}

#else  // built without NCCL

bool nccl_available() { return false; }

std::string nccl_version() { return ""; }

std::unique_ptr<Communicator> make_nccl_communicator(const MpiCommunicator&, Backend& backend, const std::string&) {
  fail_input(std::string("more than one rank on the ") + backend.name() +
             " backend needs NCCL, and this polyllama was built without it (configure with NCCL beside the CUDA "
             "toolkit, or -DNCCL_ROOT=PREFIX holding include/nccl.h and lib/libnccl.so)");
}

#endif

}  // namespace polyllama
