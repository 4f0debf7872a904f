// The NCCL communicator against hand-computed values, on every rank's own GPU: all-reduce (sum, max),
// reduce-scatter and all-gather with even and uneven pieces, broadcast, the ordered copy, in f32, bf16 and f64.
// Values are small integers, exact in bf16 and in any summation order, so results are compared for equality.
// The overlap window: a reduction started inside it, and a compute-stream op issued after end_overlap(), sees
// the reduced values. Runs on one rank (an NCCL group of one) and, through ctest, on 2 ranks; skips without a
// GPU, without NCCL, or with fewer GPUs on a node than ranks there (NCCL refuses two ranks on one GPU).
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "polyllama/backend/backend_factory.hpp"
#include "polyllama/ckpt/safetensors.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

class CudaNccl : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    if (!nccl_available()) GTEST_SKIP() << "built without NCCL";
    const int local = node_local_rank(MPI_COMM_WORLD);
    int ok = local < cuda_device_count() ? 1 : 0, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok) GTEST_SKIP() << "needs one GPU per rank on each node";
    be = make_backend("cuda", 0, local);
    MPI_Comm c = MPI_COMM_NULL;
    MPI_Comm_dup(MPI_COMM_WORLD, &c);
    mpi = std::make_unique<MpiCommunicator>(c, true);
    nccl = make_nccl_communicator(*mpi, *be);
    rank = nccl->rank();
    world = nccl->size();
  }
  void TearDown() override {
    nccl.reset();
    if (be) {
      be->synchronize();
      for (void* p : dev) be->device_free(p);
    }
  }
  // A device tensor holding v in dtype d (values exact in bf16).
  Tensor put(DType d, const std::vector<double>& v) {
    Tensor t(nullptr, d, {static_cast<int64_t>(v.size())});
    t.data = be->device_alloc(std::max<size_t>(t.bytes(), 1));
    dev.push_back(t.data);
    store(t, v);
    return t;
  }
  void store(Tensor t, const std::vector<double>& v) {
    if (t.dtype == DType::bf16) {
      std::vector<uint16_t> h;
      for (double x : v) h.push_back(f32_to_bf16(static_cast<float>(x)));
      be->upload(t, h.data());
    } else if (t.dtype == DType::f32) {
      std::vector<float> h(v.begin(), v.end());
      be->upload(t, h.data());
    } else {
      be->upload(t, v.data());
    }
  }
  std::vector<double> get(Tensor t, int64_t n = -1) {
    if (n >= 0) t.shape[0] = n;
    std::vector<double> v(static_cast<size_t>(t.numel()));
    if (t.dtype == DType::bf16) {
      std::vector<uint16_t> h(v.size());
      be->download(h.data(), t);
      for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_f32(h[i]);
    } else if (t.dtype == DType::f32) {
      std::vector<float> h(v.size());
      be->download(h.data(), t);
      for (size_t i = 0; i < v.size(); ++i) v[i] = h[i];
    } else {
      be->download(v.data(), t);
    }
    return v;
  }

  std::unique_ptr<Backend> be;
  std::unique_ptr<MpiCommunicator> mpi;
  std::unique_ptr<Communicator> nccl;
  std::vector<void*> dev;
  int rank = 0, world = 1;
};

const DType kDtypes[] = {DType::f32, DType::bf16, DType::f64};

}  // namespace

TEST_F(CudaNccl, CollectivesEqualHandComputedValues) {
  EXPECT_FALSE(nccl->host_memory());
  const int64_t n = 1000;
  for (DType d : kDtypes) {
    const std::string dt = dtype_name(d);
    // all-reduce, sum and max
    std::vector<double> x(static_cast<size_t>(n)), sum(x.size()), mx(x.size());
    for (int64_t i = 0; i < n; ++i) {
      x[static_cast<size_t>(i)] = (rank + 1) * (i % 7);
      for (int r = 0; r < world; ++r) sum[static_cast<size_t>(i)] += (r + 1) * (i % 7);
      mx[static_cast<size_t>(i)] = world * (i % 7);
    }
    Tensor t = put(d, x);
    nccl->all_reduce(t.data, n, d, ReduceOp::sum);
    EXPECT_EQ(get(t), sum) << "all_reduce sum " << dt;
    store(t, x);
    nccl->all_reduce(t.data, n, d, ReduceOp::max);
    EXPECT_EQ(get(t), mx) << "all_reduce max " << dt;

    // reduce-scatter, even and uneven pieces: member r's piece of every send buffer is summed into member r
    for (bool even : {true, false}) {
      std::vector<int64_t> counts;
      for (int r = 0; r < world; ++r) counts.push_back(even ? 64 : 3 + 5 * r);
      std::vector<double> send, want;
      for (int r = 0; r < world; ++r)
        for (int64_t i = 0; i < counts[static_cast<size_t>(r)]; ++i) {
          send.push_back((rank + 1) * (r + i % 5));
          if (r == rank) {
            double s = 0;
            for (int q = 0; q < world; ++q) s += (q + 1) * (r + i % 5);
            want.push_back(s);
          }
        }
      Tensor ts = put(d, send), tr = put(d, std::vector<double>(static_cast<size_t>(counts[static_cast<size_t>(rank)]),
                                                                 std::nan("")));
      nccl->reduce_scatter(ts.data, tr.data, counts, d);
      EXPECT_EQ(get(tr), want) << "reduce_scatter " << (even ? "even " : "uneven ") << dt;

      // all-gather in place: only this member's piece is valid on entry
      std::vector<double> buf, full;
      for (int r = 0; r < world; ++r)
        for (int64_t i = 0; i < counts[static_cast<size_t>(r)]; ++i) {
          full.push_back(10 * r + i % 9);
          buf.push_back(r == rank ? 10 * r + i % 9 : std::nan(""));
        }
      Tensor tb = put(d, buf);
      nccl->all_gather(tb.data, counts, d);
      EXPECT_EQ(get(tb), full) << "all_gather " << (even ? "even " : "uneven ") << dt;
    }

    // broadcast from the last member, and the ordered copy
    std::vector<double> b(37, rank == world - 1 ? 3.0 : -1.0);
    Tensor tb = put(d, b);
    nccl->broadcast(tb.data, 37, d, world - 1);
    EXPECT_EQ(get(tb), std::vector<double>(37, 3.0)) << "broadcast " << dt;
    Tensor tc = put(d, std::vector<double>(37, 0.0));
    nccl->copy(tc.data, tb.data, tb.bytes());
    EXPECT_EQ(get(tc), std::vector<double>(37, 3.0)) << "copy " << dt;
  }
  if (world > 1) EXPECT_GT(nccl->bytes(Collective::reduce_scatter), 0u);
}

// A reduction inside the overlap window, large enough to still be running when the host gets past it, then a
// compute-stream op after end_overlap(): the op must read the reduced values (the window's join orders it).
TEST_F(CudaNccl, ComputeAfterTheOverlapWindowSeesTheReduction) {
  const int64_t n = int64_t{1} << 24;  // 64 MiB of f32
  std::vector<double> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = (rank + 1) * (i % 3);
  Tensor t = put(DType::f32, x), out = put(DType::f32, std::vector<double>(static_cast<size_t>(n), 0.0));
  nccl->begin_overlap();
  nccl->all_reduce(t.data, n, DType::f32, ReduceOp::sum);
  nccl->end_overlap();
  be->copy(out, t);  // on the compute stream
  be->scale(out, 2.0);
  const std::vector<double> got = get(out);
  const double ranks = world * (world + 1) / 2.0;
  for (int64_t i = 0; i < n; i += 4097)
    ASSERT_EQ(got[static_cast<size_t>(i)], 2.0 * ranks * static_cast<double>(i % 3)) << "element " << i;
}

// The watchdog on real NCCL (issue 16): member 1 never calls the all-reduce member 0 is in, so member 0 waits in
// the NCCL call itself (its first collective connects the peers, NCCL_RUNTIME_CONNECT) or on the stream; either
// way its watchdog must end the whole job within seconds (MPI_Abort, exit 2), naming the collective. Nothing comes
// back from that, so tests/cli/test_nccl_watchdog.sh runs it (2 ranks, POLYLLAMA_NCCL_TIMEOUT=2) and checks
// the exit status, the message and the time; anywhere else it skips.
TEST_F(CudaNccl, StuckAllReduceEndsTheJobNamingIt) {
  if (!std::getenv("POLYLLAMA_TEST_STUCK_COLLECTIVE"))
    GTEST_SKIP() << "ends the job on purpose: run by tests/cli/test_nccl_watchdog.sh";
  if (world < 2) GTEST_SKIP() << "needs 2 ranks";
  Tensor t = put(DType::f32, std::vector<double>(1024, 1.0));
  be->synchronize();
  if (rank == 0) {
    nccl->all_reduce(t.data, 1024, DType::f32, ReduceOp::sum);
    be->synchronize();
  } else {
    std::this_thread::sleep_for(std::chrono::seconds(60));
  }
  ADD_FAILURE() << "member " << rank << " got past the stuck all-reduce: no watchdog ended the job";
}
