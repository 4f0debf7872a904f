// The parallel layout and the MPI collectives: group membership (tp ranks consecutive), hand-computable values
// of every collective, the payload bytes counted, and the refusals of layouts that do not fit. Runs on one rank
// and, through ctest, under mpirun -np 2 and -np 4.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "polyllama/model/llama_sharding.hpp"
#include "polyllama/parallel/environment.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "test_support.hpp"

using namespace polyllama;

namespace {

using test::world_rank;
using test::world_size;
}  // namespace

TEST(ParallelCollectives, GroupsAndValuesForEveryLayout) {
  const int world = world_size();
  for (int tp = 1; tp <= world; ++tp) {
    if (world % tp != 0) continue;
    const ParallelDims dims = ParallelDims::from_tp(tp, world);
    ParallelContext pc(dims, MPI_COMM_WORLD);
    const int r = pc.rank();
    EXPECT_EQ(pc.tp_rank(), r % tp);
    EXPECT_EQ(pc.dp_rank(), r / tp);
    EXPECT_EQ(pc.tp().size(), tp);
    EXPECT_EQ(pc.dp().size(), world / tp);

    // all_reduce sum over tp of (rank + 1): the sum over the consecutive ranks of this replica.
    double x[2] = {static_cast<double>(r + 1), static_cast<double>(-r)};
    pc.tp().all_reduce(x, 2, DType::f64, ReduceOp::sum);
    const int base = (r / tp) * tp;
    double want = 0;
    for (int k = base; k < base + tp; ++k) want += k + 1;
    EXPECT_EQ(x[0], want);
    float m = static_cast<float>(r);
    pc.dp().all_reduce(&m, 1, DType::f32, ReduceOp::max);
    EXPECT_EQ(m, static_cast<float>(world - tp + r % tp));  // the last replica's rank with this tp rank

    // reduce_scatter over dp, uneven counts: member j gets j + 1 elements, each the sum of (rank*10 + index).
    const int dp = pc.dp().size();
    std::vector<int64_t> counts;
    int64_t total = 0;
    for (int j = 0; j < dp; ++j) counts.push_back(j + 1), total += j + 1;
    std::vector<float> send(static_cast<size_t>(total)), recv(static_cast<size_t>(pc.dp_rank() + 1));
    for (int64_t i = 0; i < total; ++i) send[static_cast<size_t>(i)] = static_cast<float>(r * 10 + i);
    pc.dp().reduce_scatter(send.data(), recv.data(), counts, DType::f32);
    int64_t at = 0;
    for (int j = 0; j < pc.dp_rank(); ++j) at += j + 1;
    for (int64_t i = 0; i < pc.dp_rank() + 1; ++i) {
      double s = 0;
      for (int d = 0; d < dp; ++d) s += (d * tp + r % tp) * 10 + (at + i);
      EXPECT_EQ(recv[static_cast<size_t>(i)], static_cast<float>(s));
    }
    // all_gather in place: every member's piece ends up everywhere.
    std::vector<double> buf(static_cast<size_t>(total), -1.0);
    for (int64_t i = 0; i < pc.dp_rank() + 1; ++i) buf[static_cast<size_t>(at + i)] = pc.dp_rank() * 100 + i;
    pc.dp().all_gather(buf.data(), counts, DType::f64);
    at = 0;
    for (int j = 0; j < dp; ++j)
      for (int64_t i = 0; i < j + 1; ++i) EXPECT_EQ(buf[static_cast<size_t>(at++)], j * 100 + i);
    double b = r == 0 ? 42.0 : 0.0;
    pc.world().broadcast(&b, 1, DType::f64, 0);
    EXPECT_EQ(b, 42.0);
    // Bytes: payload of calls on groups of more than one rank.
    EXPECT_EQ(pc.tp().bytes(Collective::all_reduce), tp > 1 ? 16u : 0u);
    EXPECT_EQ(pc.dp().bytes(Collective::all_gather), dp > 1 ? static_cast<uint64_t>(total) * 8 : 0u);
    EXPECT_EQ(pc.dp().bytes(Collective::reduce_scatter), dp > 1 ? static_cast<uint64_t>(total) * 4 : 0u);
    EXPECT_EQ(pc.world().bytes(Collective::broadcast), world > 1 ? 8u : 0u);
  }
}

TEST(ParallelCollectives, LayoutRefusalsNameTheNumbers) {
  auto [code, msg] = test::error_of([] { ParallelDims{2, 3}.validate(4); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find("2 * 3 = 6, but 4 ranks"), std::string::npos) << msg;
  std::tie(code, msg) = test::error_of([] { (void)ParallelDims::from_tp(3, 4); });
  EXPECT_NE(msg.find("--tp 3 does not divide the 4"), std::string::npos) << msg;

  ModelConfig cfg = ModelConfig::preset("tiny");  // 4 heads, 2 kv heads, 176 features, 512 vocab
  EXPECT_EQ(test::error_of([&] { validate_tensor_parallel(cfg, 2); }).first, 0);
  std::tie(code, msg) = test::error_of([&] { validate_tensor_parallel(cfg, 4); });
  EXPECT_NE(msg.find("num_key_value_heads = 2 does not divide by --tp 4"), std::string::npos) << msg;
  std::tie(code, msg) = test::error_of([&] { validate_tensor_parallel(cfg, 3); });
  EXPECT_NE(msg.find("num_attention_heads = 4 does not divide by --tp 3"), std::string::npos) << msg;
  cfg.intermediate_size = 170;
  std::tie(code, msg) = test::error_of([&] { validate_tensor_parallel(cfg, 4 / 2); });
  EXPECT_EQ(code, 0) << msg;  // 170 = 2 * 85
  cfg.intermediate_size = 171;
  std::tie(code, msg) = test::error_of([&] { validate_tensor_parallel(cfg, 2); });
  EXPECT_NE(msg.find("intermediate_size = 171 does not divide by --tp 2"), std::string::npos) << msg;
  cfg.intermediate_size = 176;
  cfg.vocab_size = 511;  // an uneven vocabulary is refused, not padded
  std::tie(code, msg) = test::error_of([&] { validate_tensor_parallel(cfg, 2); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find("vocab_size = 511 does not divide by --tp 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--pad-to-multiple"), std::string::npos) << msg;
}

// prepare_singleton_mpi: a process started on its own tells Open MPI it is alone (no daemon, no transport
// probing), keeping any value the user set; ranks started by mpirun are left as they are.
TEST(ParallelCollectives, OnlyASingletonIsToldItIsAlone) {
  const bool alone = mpi_info(MPI_COMM_WORLD).launcher == "none";
  const std::vector<std::pair<const char*, const char*>> want = {
      {"OMPI_MCA_ess_singleton_isolated", "1"}, {"OMPI_MCA_orte_create_session_dirs", "0"},
      {"OMPI_MCA_sharedfp", "^sm"},            {"OMPI_MCA_pml", "ob1"},
      {"OMPI_MCA_btl", "self"}};
  std::vector<std::pair<bool, std::string>> saved;
  for (const auto& [name, value] : want) {
    const char* v = std::getenv(name);
    saved.push_back({v != nullptr, v ? v : ""});
    unsetenv(name);
  }
  prepare_singleton_mpi();
  for (const auto& [name, value] : want) EXPECT_STREQ(std::getenv(name), alone ? value : nullptr) << name;
  if (alone) {
    setenv("OMPI_MCA_pml", "ucx", 1);  // the user's choice stands
    prepare_singleton_mpi();
    EXPECT_STREQ(std::getenv("OMPI_MCA_pml"), "ucx");
  }
  for (size_t i = 0; i < want.size(); ++i)
    if (saved[i].first) setenv(want[i].first, saved[i].second.c_str(), 1);
    else unsetenv(want[i].first);
}
