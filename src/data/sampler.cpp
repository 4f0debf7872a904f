#include "polyllama/data/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>

#include "polyllama/core/error.hpp"
#include "polyllama/core/random.hpp"
#include "polyllama/data/shards.hpp"

namespace polyllama {

namespace {

constexpr uint64_t kTrainSalt = 0x7261696e5eedULL, kValSalt = 0x76616c5eedULL;  // separate window orders per split

}  // namespace

int64_t feistel_permute(uint64_t key, int64_t n, int64_t x) {
  if (n <= 1) return 0;
  int bits = 2;
  while (bits < 62 && (int64_t{1} << bits) < n) bits += 2;
  const int half = bits / 2;
  const uint64_t mask = (uint64_t{1} << half) - 1;
  auto y = static_cast<uint64_t>(x);
  do {  // cycle walking: the network permutes [0, 2^bits); re-apply until the value lands in [0, n)
    uint64_t left = y >> half, right = y & mask;
    for (uint64_t round = 0; round < 6; ++round) {
      const uint64_t f = mix64(key ^ (round * 0x9e3779b97f4a7c15ULL) ^ right) & mask;
      const uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    y = (left << half) | right;
  } while (y >= static_cast<uint64_t>(n));
  return static_cast<int64_t>(y);
}

std::vector<DataSource> parse_data_sources(const std::vector<std::string>& specs) {
  if (specs.empty()) fail_input("no data directories given");
  std::vector<DataSource> out;
  int with_weight = 0;
  for (const std::string& s : specs) {
    DataSource d;
    d.dir = s;
    const auto colon = s.find(':');
    if (colon != std::string::npos && colon > 0) {
      const std::string w = s.substr(0, colon);
      char* end = nullptr;
      const double v = std::strtod(w.c_str(), &end);
      if (end == w.c_str() + w.size()) {
        if (!(v > 0) || !std::isfinite(v)) fail_input("data weight must be positive, got '" + s + "'");
        d.weight = v;
        d.dir = s.substr(colon + 1);
        ++with_weight;
      }
    }
    if (d.dir.empty()) fail_input("empty data directory in '" + s + "'");
    out.push_back(d);
  }
  if (with_weight != 0 && with_weight != static_cast<int>(out.size()))
    fail_input("give a weight to every data directory (WEIGHT:DIR) or to none");
  return out;
}

void SamplerConfig::validate() const {
  if (seq_len < 1) fail_input("seq_len must be >= 1, got " + std::to_string(seq_len));
  if (val_every < 0) fail_input("val_every must be >= 0, got " + std::to_string(val_every));
  if (val_every == 1) fail_input("val_every 1 would hold out every document; use 0 (none) or >= 2");
  if (vocab_size < 0) fail_input("vocab_size must be >= 0");
  if (blend_period < 1) fail_input("blend_period must be >= 1");
}

// One dataset's split: a token stream made of the split's documents.
struct PackedSampler::Set {
  ShardReader reader;
  int64_t val_every = 0;  // N
  DataSplit split = DataSplit::train;
  std::vector<int64_t> val_prefix;  // tokens of validation documents 0..k-1 (k-th is document k*N + N - 1)
  int64_t nval = 0, tokens = 0, documents = 0, windows = 0;
  double weight = 0;

  explicit Set(ShardReader r) : reader(std::move(r)) {}
  bool is_val(int64_t d) const { return val_every > 0 && d % val_every == val_every - 1; }
  // Offset of document d in the training stream (d need not be a training document).
  int64_t train_offset(int64_t d) const {
    return reader.doc_offset(d) - (val_every > 0 ? val_prefix[static_cast<size_t>(d / val_every)] : 0);
  }
  // Tokens [pos, pos + n) of the split's stream.
  void copy(int64_t pos, int64_t n, uint32_t* out) const {
    if (val_every == 0) return reader.read_tokens(pos, n, out);
    const int64_t D = reader.documents();
    int64_t d = 0, local = 0;
    if (split == DataSplit::train) {
      int64_t lo = 0, hi = D - 1;  // largest d with train_offset(d) <= pos: a training document
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo + 1) / 2;
        if (train_offset(mid) <= pos) lo = mid;
        else hi = mid - 1;
      }
      d = lo;
      local = pos - train_offset(d);
    } else {
      const auto it = std::upper_bound(val_prefix.begin(), val_prefix.begin() + nval, pos);
      const int64_t k = (it - val_prefix.begin()) - 1;
      d = k * val_every + val_every - 1;
      local = pos - val_prefix[static_cast<size_t>(k)];
    }
    while (n > 0) {
      const int64_t take = std::min(n, reader.doc_length(d) - local);
      std::copy_n(reader.doc_tokens(d) + local, take, out);
      out += take;
      n -= take;
      local = 0;
      if (split == DataSplit::train) {
        do ++d;
        while (is_val(d));
      } else {
        d += val_every;
      }
    }
  }
};

PackedSampler::PackedSampler(const std::vector<DataSource>& sources, const SamplerConfig& cfg, DataSplit split,
                             const std::string& tokenizer_checksum)
    : cfg_(cfg), split_(split), checksum_(tokenizer_checksum) {
  cfg_.validate();
  if (sources.empty()) fail_input("no data directories given");
  const bool weighted = sources.front().weight >= 0;
  for (const DataSource& src : sources) {
    if ((src.weight >= 0) != weighted) fail_input("give a weight to every data directory or to none");
    ShardReader r(src.dir, checksum_);
    if (checksum_.empty()) checksum_ = r.meta().tokenizer_checksum;
    const int64_t tok_vocab = r.meta().vocab_size;
    if (vocab_ == 0) vocab_ = cfg_.vocab_size > 0 ? cfg_.vocab_size : tok_vocab;
    if (vocab_ < tok_vocab)
      fail_input(src.dir + ": its tokenizer has " + std::to_string(tok_vocab) + " pieces, more than the model's "
                 "vocabulary of " + std::to_string(vocab_));
    auto s = std::make_unique<Set>(std::move(r));
    s->val_every = cfg_.val_every;
    s->split = split;
    const int64_t D = s->reader.documents(), N = cfg_.val_every;
    if (N > 0) {
      s->nval = D / N;
      s->val_prefix.assign(static_cast<size_t>(s->nval) + 1, 0);
      for (int64_t k = 0; k < s->nval; ++k)
        s->val_prefix[static_cast<size_t>(k) + 1] =
            s->val_prefix[static_cast<size_t>(k)] + s->reader.doc_length(k * N + N - 1);
    }
    const int64_t val_tokens = N > 0 ? s->val_prefix.back() : 0;
    s->tokens = split == DataSplit::train ? s->reader.tokens() - val_tokens : val_tokens;
    s->documents = split == DataSplit::train ? D - s->nval : s->nval;
    s->windows = s->tokens > 0 ? (s->tokens - 1) / cfg_.seq_len : 0;
    const char* what = split == DataSplit::train ? "training" : "validation";
    if (s->windows < 1)
      fail_input(src.dir + ": its " + what + " split has " + std::to_string(s->tokens) + " tokens (" +
                 std::to_string(s->documents) + " documents), less than one window of seq_len + 1 = " +
                 std::to_string(cfg_.seq_len + 1) + " tokens" +
                 (split == DataSplit::validation && N == 0 ? "; hold out documents with val_every" : ""));
    s->weight = weighted ? src.weight : static_cast<double>(s->windows);
    sets_.push_back(std::move(s));
  }

  // Blend: quotas per period by largest remainders, then the slot order by largest lag.
  const size_t K = sets_.size();
  double total = 0;
  for (const auto& s : sets_) total += s->weight;
  if (K == 1) {
    sets_[0]->weight = 1;
    return;
  }
  const int64_t P = cfg_.blend_period;
  quota_.assign(K, 0);
  std::vector<std::pair<double, size_t>> rest;
  int64_t assigned = 0;
  for (size_t k = 0; k < K; ++k) {
    const double exact = sets_[k]->weight / total * static_cast<double>(P);
    quota_[k] = static_cast<int64_t>(std::floor(exact));
    assigned += quota_[k];
    rest.push_back({-(exact - std::floor(exact)), k});
  }
  std::sort(rest.begin(), rest.end());
  for (size_t i = 0; assigned < P; ++i, ++assigned) ++quota_[rest[i % K].second];
  for (size_t k = 0; k < K; ++k) {
    if (quota_[k] < 1)
      fail_input(sources[k].dir + ": blend weight " + std::to_string(sets_[k]->weight / total) +
                 " is below 1 / blend_period (" + std::to_string(P) + "); raise the weight or the period");
    sets_[k]->weight = static_cast<double>(quota_[k]) / static_cast<double>(P);
  }
  choice_.resize(static_cast<size_t>(P));
  rank_in_period_.resize(static_cast<size_t>(P));
  std::vector<int64_t> count(K, 0);
  for (int64_t r = 0; r < P; ++r) {
    size_t best = K;
    int64_t best_lag = 0;
    for (size_t k = 0; k < K; ++k) {
      if (count[k] >= quota_[k]) continue;
      const int64_t lag = quota_[k] * (r + 1) - count[k] * P;  // (target - realised) * P
      if (best == K || lag > best_lag) {
        best = k;
        best_lag = lag;
      }
    }
    choice_[static_cast<size_t>(r)] = static_cast<int32_t>(best);
    rank_in_period_[static_cast<size_t>(r)] = count[best]++;
  }
}

PackedSampler::~PackedSampler() = default;
PackedSampler::PackedSampler(PackedSampler&&) noexcept = default;
PackedSampler& PackedSampler::operator=(PackedSampler&&) noexcept = default;

PackedSampler::Origin PackedSampler::locate(int64_t i) const {
  if (i < 0) fail_runtime("negative sample index " + std::to_string(i), __FILE__, __LINE__);
  Origin o;
  if (sets_.size() == 1) {
    o.dataset_sample = i;
  } else {
    const int64_t P = cfg_.blend_period, r = i % P;
    o.dataset = choice_[static_cast<size_t>(r)];
    o.dataset_sample = (i / P) * quota_[static_cast<size_t>(o.dataset)] + rank_in_period_[static_cast<size_t>(r)];
  }
  const Set& s = *sets_[static_cast<size_t>(o.dataset)];
  o.epoch = o.dataset_sample / s.windows;
  const uint64_t key = random_bits(cfg_.seed ^ (split_ == DataSplit::train ? kTrainSalt : kValSalt),
                                   static_cast<uint64_t>(o.dataset), static_cast<uint64_t>(o.epoch));
  o.window = feistel_permute(key, s.windows, o.dataset_sample % s.windows);
  return o;
}

void PackedSampler::emit(const Set& s, int64_t w, int32_t* inputs, int32_t* targets) const {
  const int64_t T = cfg_.seq_len;
  thread_local std::vector<uint32_t> buf;
  buf.resize(static_cast<size_t>(T + 1));
  s.copy(w * T, T + 1, buf.data());
  for (int64_t t = 0; t <= T; ++t) {
    const uint32_t id = buf[static_cast<size_t>(t)];
    if (id >= static_cast<uint64_t>(vocab_))
      fail_input(s.reader.dir() + ": token id " + std::to_string(id) + " (window " + std::to_string(w) +
                 ", position " + std::to_string(t) + ") is outside the model's vocabulary of " +
                 std::to_string(vocab_) + "; corrupt shard or wrong tokenizer");
    if (t < T) inputs[t] = static_cast<int32_t>(id);
    if (t > 0) targets[t - 1] = static_cast<int32_t>(id);
  }
}

void PackedSampler::sample(int64_t global_index, int32_t* inputs, int32_t* targets) const {
  const Origin o = locate(global_index);
  emit(*sets_[static_cast<size_t>(o.dataset)], o.window, inputs, targets);
}

void PackedSampler::micro_batch(int64_t consumed, int dp_rank, int64_t micro_batch, int32_t* inputs,
                                int32_t* targets) const {
  const int64_t first = first_sample(consumed, dp_rank, micro_batch), T = cfg_.seq_len;
  for (int64_t b = 0; b < micro_batch; ++b) sample(first + b, inputs + b * T, targets + b * T);
}

int64_t PackedSampler::windows() const {
  int64_t n = 0;
  for (const auto& s : sets_) n += s->windows;
  return n;
}

int64_t PackedSampler::tokens() const {
  int64_t n = 0;
  for (const auto& s : sets_) n += s->tokens;
  return n;
}

void PackedSampler::window(int64_t w, int32_t* inputs, int32_t* targets) const {
  for (size_t k = 0; k < sets_.size(); ++k) {
    if (w < sets_[k]->windows) return emit(*sets_[k], w, inputs, targets);
    w -= sets_[k]->windows;
  }
  fail_runtime("window index past the end of the split", __FILE__, __LINE__);
}

void PackedSampler::window(int dataset, int64_t w, int32_t* inputs, int32_t* targets) const {
  const Set& s = *sets_.at(static_cast<size_t>(dataset));
  if (w < 0 || w >= s.windows) fail_runtime("window " + std::to_string(w) + " out of range", __FILE__, __LINE__);
  emit(s, w, inputs, targets);
}

int64_t PackedSampler::windows(int dataset) const { return sets_.at(static_cast<size_t>(dataset))->windows; }
int64_t PackedSampler::tokens(int dataset) const { return sets_.at(static_cast<size_t>(dataset))->tokens; }
int64_t PackedSampler::documents(int dataset) const { return sets_.at(static_cast<size_t>(dataset))->documents; }
double PackedSampler::weight(int dataset) const { return sets_.at(static_cast<size_t>(dataset))->weight; }
const ShardReader& PackedSampler::reader(int dataset) const { return sets_.at(static_cast<size_t>(dataset))->reader; }

}  // namespace polyllama
