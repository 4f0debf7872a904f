// PackedSampler: windows are slices of the packed stream (with and without a validation split); the order
// is a pure function of (seed, index) -- deterministic, a fresh sampler resumed at any index continues the
// uninterrupted stream whatever it was asked before, and data-parallel sizes 1, 2 and 4 with the same global
// batch read the same samples in the same global order; every epoch visits every window once; blend shares stay within n/P + 1 of the
// weights; and a mismatched tokenizer, an id outside the vocabulary or too little data are errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "polyllama/core/error.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/data/sampler.hpp"
#include "polyllama/data/shards.hpp"
#include "test_support.hpp"

namespace polyllama {
using polyllama::test::error_of;

namespace {

constexpr const char* kChecksum = "0123456789abcdef";

using Doc = std::vector<uint32_t>;  // without its EOS

// Documents of random lengths; token values say which dataset they come from (tag * 100 + ...).
std::vector<Doc> make_docs(int tag, int n, uint64_t seed) {
  std::vector<Doc> docs;
  for (int d = 0; d < n; ++d) {
    Doc doc;
    const uint64_t len = 1 + random_bits(seed, 0, static_cast<uint64_t>(d)) % 40;
    for (uint64_t i = 0; i < len; ++i)
      doc.push_back(static_cast<uint32_t>(3 + tag * 100 + random_bits(seed, 1 + static_cast<uint64_t>(d), i) % 97));
    docs.push_back(doc);
  }
  return docs;
}

// Writes docs (EOS = 2) as a dataset in dir, spread over shards of about 64 tokens by two writers.
std::string write_dataset(const std::string& dir, const std::vector<Doc>& docs, const std::string& checksum = kChecksum,
                          int64_t vocab = 1000) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::vector<RankResult> ranks(2);
  int64_t tokens = 0;
  for (int w = 0; w < 2; ++w) {
    ShardWriter writer(dir, w, 64);
    const size_t half = docs.size() / 2;
    for (size_t d = w == 0 ? 0 : half; d < (w == 0 ? half : docs.size()); ++d) {
      std::vector<int32_t> ids(docs[d].begin(), docs[d].end());
      writer.add_document(ids.data(), static_cast<int64_t>(ids.size()), 2);
      tokens += static_cast<int64_t>(ids.size()) + 1;
    }
    writer.finish();
    ranks[static_cast<size_t>(w)].shards = writer.shards();
  }
  DatasetMeta meta;
  meta.tokenizer_checksum = checksum;
  meta.vocab_size = vocab;
  meta.eos_id = 2;
  meta = merge_rank_results(ranks, meta);
  meta.documents = static_cast<int64_t>(docs.size());
  meta.tokens = tokens;
  write_dataset_metadata(dir, meta);
  return dir;
}

// The packed stream of the documents d with keep(d).
template <typename Keep> std::vector<int32_t> packed(const std::vector<Doc>& docs, Keep keep) {
  std::vector<int32_t> s;
  for (size_t d = 0; d < docs.size(); ++d)
    if (keep(static_cast<int64_t>(d))) {
      s.insert(s.end(), docs[d].begin(), docs[d].end());
      s.push_back(2);
    }
  return s;
}


std::vector<int32_t> draw(const PackedSampler& s, int64_t i) {
  const auto T = static_cast<size_t>(s.seq_len());
  std::vector<int32_t> in(T), tg(T);
  s.sample(i, in.data(), tg.data());
  in.insert(in.end(), tg.back());  // the window: inputs plus the last target
  return in;
}

class SamplerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("sampler");
    zh_docs_ = make_docs(1, 300, 11);
    en_docs_ = make_docs(2, 120, 12);
    zh_ = write_dataset(dir_ + "/zh", zh_docs_);
    en_ = write_dataset(dir_ + "/en", en_docs_);
  }
  std::string dir_, zh_, en_;
  std::vector<Doc> zh_docs_, en_docs_;
};

TEST_F(SamplerTest, WindowsAreSlicesOfThePackedStream) {
  SamplerConfig cfg;
  cfg.seq_len = 16;
  for (int64_t val_every : {0, 5}) {
    cfg.val_every = val_every;
    for (DataSplit split : {DataSplit::train, DataSplit::validation}) {
      if (val_every == 0 && split == DataSplit::validation) continue;
      const PackedSampler s({{zh_}}, cfg, split, kChecksum);
      const bool val = split == DataSplit::validation;
      const auto stream = packed(zh_docs_, [&](int64_t d) {
        const bool is_val = val_every > 0 && d % val_every == val_every - 1;
        return val ? is_val : !is_val;
      });
      ASSERT_EQ(s.tokens(0), static_cast<int64_t>(stream.size()));
      ASSERT_EQ(s.windows(), (s.tokens(0) - 1) / 16);
      std::vector<int32_t> in(16), tg(16);
      for (int64_t w = 0; w < s.windows(); ++w) {
        s.window(w, in.data(), tg.data());
        for (size_t t = 0; t < 16; ++t) {
          ASSERT_EQ(in[t], stream[static_cast<size_t>(w * 16) + t]) << "split " << val << " window " << w;
          ASSERT_EQ(tg[t], stream[static_cast<size_t>(w * 16) + t + 1]);
        }
      }
    }
  }
  cfg.val_every = 5;
  EXPECT_EQ(PackedSampler({{zh_}}, cfg, DataSplit::validation, kChecksum).documents(0), 60);
  EXPECT_EQ(PackedSampler({{zh_}}, cfg, DataSplit::train, kChecksum).documents(0), 240);
}

TEST_F(SamplerTest, DeterministicAndEveryEpochIsAPermutation) {
  SamplerConfig cfg;
  cfg.seq_len = 8;
  cfg.seed = 42;
  const PackedSampler a({{zh_}}, cfg, DataSplit::train, kChecksum), b({{zh_}}, cfg, DataSplit::train, "");
  const int64_t W = a.windows();
  std::vector<int64_t> order0, order1;
  for (int64_t e = 0; e < 3; ++e) {
    std::set<int64_t> seen;
    for (int64_t j = 0; j < W; ++j) {
      const int64_t i = e * W + j;
      const auto o = a.locate(i);
      ASSERT_EQ(o.epoch, e);
      seen.insert(o.window);
      if (e == 0) order0.push_back(o.window);
      if (e == 1) order1.push_back(o.window);
      ASSERT_EQ(draw(a, i), draw(b, i));
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), W) << "epoch " << e << " repeats a window";
  }
  EXPECT_NE(order0, order1);  // each epoch has its own order
  cfg.seed = 43;
  const PackedSampler c({{zh_}}, cfg, DataSplit::train, kChecksum);
  int same = 0;
  for (int64_t i = 0; i < W; ++i) same += draw(a, i) == draw(c, i) ? 1 : 0;
  EXPECT_LT(same, W / 4);
}

// A resumed run is a new process that starts drawing at the consumed-samples count, with none of the history the
// uninterrupted run had. Unlike DeterministicAndEveryEpochIsAPermutation (two samplers, the same call sequence),
// each resumed sampler here is queried in another order: backwards from the end, then at random, from points on
// either side of each dataset's epoch boundaries. Any state carried between calls (an epoch permutation or blend
// position cached and reused for the wrong epoch) makes these differ from the uninterrupted stream.
TEST_F(SamplerTest, ResumedSamplerContinuesTheStreamWhateverItDrewBefore) {
  SamplerConfig cfg;
  cfg.seq_len = 12;
  const std::vector<DataSource> src = parse_data_sources({"0.7:" + zh_, "0.3:" + en_});
  const PackedSampler first(src, cfg, DataSplit::train, kChecksum);
  std::vector<int64_t> resume_points = {1, 317};
  int64_t n = 0;  // the stream drawn until both datasets are in their third epoch
  std::vector<int64_t> epoch_of(2, 0);
  for (; epoch_of[0] < 2 || epoch_of[1] < 2; ++n) {
    const auto o = first.locate(n);
    if (o.epoch != epoch_of[static_cast<size_t>(o.dataset)]) {  // the first sample of a new epoch of a dataset
      epoch_of[static_cast<size_t>(o.dataset)] = o.epoch;
      for (int64_t d : {-1, 0, 1}) resume_points.push_back(n + d);
    }
  }
  n += 50;
  ASSERT_GE(resume_points.size(), 2u + 4 * 3) << "the stream should cross two epochs of each dataset";
  std::vector<std::vector<int32_t>> uninterrupted;
  for (int64_t i = 0; i < n; ++i) uninterrupted.push_back(draw(first, i));
  for (int64_t resume_at : resume_points) {
    const PackedSampler s(src, cfg, DataSplit::train, kChecksum);  // a new process after a restart
    for (int64_t i = n; i-- > resume_at;)
      ASSERT_EQ(draw(s, i), uninterrupted[static_cast<size_t>(i)]) << "resumed at " << resume_at << ", sample " << i;
    for (int64_t k = 0; k < 200; ++k) {
      const int64_t left = n - resume_at;
      const int64_t i = resume_at + feistel_permute(static_cast<uint64_t>(resume_at), left, k % left);
      ASSERT_EQ(draw(s, i), uninterrupted[static_cast<size_t>(i)]) << "resumed at " << resume_at << ", sample " << i;
    }
  }
}

TEST_F(SamplerTest, DataParallelSizeDoesNotChangeTheSamples) {
  SamplerConfig cfg;
  cfg.seq_len = 10;
  const PackedSampler s(parse_data_sources({"0.9:" + zh_, "0.1:" + en_}), cfg, DataSplit::train, kChecksum);
  const int64_t B = 2, G = 8, T = cfg.seq_len, steps = 40;
  // Rows of each step in global order, as each dp layout reads them.
  auto run = [&](int dp) {
    std::vector<std::vector<int32_t>> rows;
    int64_t consumed = 0;
    for (int64_t step = 0; step < steps; ++step) {
      std::map<int64_t, std::vector<int32_t>> by_index;  // global sample index -> inputs
      for (int64_t a = 0; a < G / (dp * B); ++a) {
        for (int r = 0; r < dp; ++r) {  // every rank's micro-batch
          std::vector<int32_t> in(static_cast<size_t>(B * T)), tg(static_cast<size_t>(B * T));
          s.micro_batch(consumed, r, B, in.data(), tg.data());
          for (int64_t b = 0; b < B; ++b) {
            const int64_t idx = PackedSampler::first_sample(consumed, r, B) + b;
            const std::vector<int32_t> row(in.begin() + b * T, in.begin() + (b + 1) * T);
            EXPECT_TRUE(by_index.emplace(idx, row).second) << "sample " << idx << " read twice";
          }
        }
        consumed += dp * B;
      }
      EXPECT_EQ(by_index.begin()->first, step * G);
      EXPECT_EQ(by_index.rbegin()->first, step * G + G - 1);
      for (auto& [idx, row] : by_index) rows.push_back(row);
    }
    return rows;
  };
  const auto dp1 = run(1);
  EXPECT_EQ(run(2), dp1);
  EXPECT_EQ(run(4), dp1);
}

TEST_F(SamplerTest, BlendSharesFollowTheWeights) {
  const std::string third = write_dataset(dir_ + "/third", make_docs(3, 50, 13));
  SamplerConfig cfg;
  cfg.seq_len = 4;
  cfg.blend_period = 1000;
  for (const std::vector<std::string>& spec :
       {std::vector<std::string>{"0.9:" + zh_, "0.1:" + en_}, {"7:" + zh_, "2:" + en_, "1:" + third}}) {
    const PackedSampler s(parse_data_sources(spec), cfg, DataSplit::train, kChecksum);
    const int K = s.datasets();
    std::vector<double> w;
    double total = 0;
    for (const std::string& x : spec) total += std::stod(x.substr(0, x.find(':')));
    for (const std::string& x : spec) w.push_back(std::stod(x.substr(0, x.find(':'))) / total);
    for (int k = 0; k < K; ++k)
      EXPECT_NEAR(s.weight(k), w[static_cast<size_t>(k)], 1.0 / static_cast<double>(cfg.blend_period));
    std::vector<int64_t> count(static_cast<size_t>(K), 0);
    double worst = 0;
    const int64_t n = 50000;
    for (int64_t i = 0; i < n; ++i) {
      const auto o = s.locate(i);
      // Each dataset's samples are consumed in order, without holes.
      ASSERT_EQ(o.dataset_sample, count[static_cast<size_t>(o.dataset)]);
      ++count[static_cast<size_t>(o.dataset)];
      for (int k = 0; k < K; ++k) {
        const double dev = std::fabs(static_cast<double>(count[static_cast<size_t>(k)]) -
                                     w[static_cast<size_t>(k)] * static_cast<double>(i + 1));
        const double bound = static_cast<double>(i + 1) / static_cast<double>(cfg.blend_period) + 1;
        ASSERT_LE(dev, bound) << "dataset " << k << " after " << i + 1 << " samples";
        worst = std::max(worst, dev - static_cast<double>(i + 1) / static_cast<double>(cfg.blend_period));
      }
    }
    for (int k = 0; k < K; ++k)
      EXPECT_NEAR(static_cast<double>(count[static_cast<size_t>(k)]) / n, w[static_cast<size_t>(k)], 1e-3);
    // A sample's tokens come from the dataset it was assigned to (token values carry the dataset's tag).
    for (int64_t i = 0; i < 200; ++i) {
      const auto o = s.locate(i);
      for (int32_t t : draw(s, i))
        if (t != 2) ASSERT_EQ((t - 3) / 100, o.dataset + 1);
    }
  }
  // Without weights the datasets are mixed in proportion to their windows.
  const PackedSampler s(parse_data_sources({zh_, en_}), cfg, DataSplit::train, kChecksum);
  EXPECT_NEAR(s.weight(0), static_cast<double>(s.windows(0)) / static_cast<double>(s.windows()), 1e-3);
}

TEST_F(SamplerTest, RefusesMismatchesAndBadData) {
  SamplerConfig cfg;
  cfg.seq_len = 8;
  const std::string other = write_dataset(dir_ + "/other", make_docs(1, 50, 14), "fedcba9876543210");
  auto [code, msg] = error_of([&] { PackedSampler({{zh_}, {other}}, cfg, DataSplit::train, ""); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find("fedcba9876543210"), std::string::npos) << msg;
  EXPECT_NE(msg.find(kChecksum), std::string::npos) << msg;
  std::tie(code, msg) = error_of([&] { PackedSampler({{zh_}}, cfg, DataSplit::train, "fedcba9876543210"); });
  EXPECT_EQ(code, 1);
  // An id at or above the vocabulary (a corrupt shard) is an error naming the dataset.
  const Doc bad_doc = {5, 6, 7, 1500, 8, 9, 10, 11, 12, 13, 14, 15};
  const std::string bad = write_dataset(dir_ + "/bad", {bad_doc}, kChecksum, 1000);
  const PackedSampler s({{bad}}, cfg, DataSplit::train, kChecksum);
  std::vector<int32_t> in(8), tg(8);
  std::tie(code, msg) = error_of([&] { s.sample(0, in.data(), tg.data()); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find(bad + ": token id 1500"), std::string::npos) << msg;
  // A model vocabulary smaller than the tokenizer's is refused up front.
  const std::string big = write_dataset(dir_ + "/big", {bad_doc}, kChecksum, 2000);
  cfg.vocab_size = 1000;
  std::tie(code, msg) = error_of([&] { PackedSampler({{big}}, cfg, DataSplit::train, kChecksum); });
  EXPECT_EQ(code, 1);
  EXPECT_NE(msg.find("more than the model's vocabulary of 1000"), std::string::npos) << msg;
  cfg.vocab_size = 0;
  PackedSampler({{big}}, cfg, DataSplit::train, kChecksum).sample(0, in.data(), tg.data());
  // Too little data for one window, and a validation split without val_every.
  cfg.seq_len = 100000;
  std::tie(code, msg) = error_of([&] { PackedSampler({{zh_}}, cfg, DataSplit::train, kChecksum); });
  EXPECT_NE(msg.find("less than one window"), std::string::npos) << msg;
  cfg.seq_len = 8;
  std::tie(code, msg) = error_of([&] { PackedSampler({{zh_}}, cfg, DataSplit::validation, kChecksum); });
  EXPECT_NE(msg.find("val_every"), std::string::npos) << msg;
  EXPECT_EQ(error_of([&] { parse_data_sources({"0.5:" + zh_, en_}); }).first, 1);
  EXPECT_EQ(error_of([&] { parse_data_sources({"-1:" + zh_}); }).first, 1);
}

TEST(Feistel, IsAPermutation) {
  for (int64_t n : {1, 2, 3, 5, 17, 64, 1000, 4097}) {
    std::vector<int64_t> img;
    for (int64_t x = 0; x < n; ++x) img.push_back(feistel_permute(12345, n, x));
    std::sort(img.begin(), img.end());
    for (int64_t x = 0; x < n; ++x) ASSERT_EQ(img[static_cast<size_t>(x)], x) << "n " << n;
  }
  int fixed = 0;
  for (int64_t x = 0; x < 1000; ++x) fixed += feistel_permute(99, 1000, x) == x ? 1 : 0;
  EXPECT_LT(fixed, 10);  // a shuffle, not the identity
}

}  // namespace
}  // namespace polyllama
