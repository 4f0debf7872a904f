#pragma once
// Pretraining samples from token datasets (`polyllama data` directories), DESIGN.md section 5.
//
// Each dataset's documents (each already ending in EOS) are packed back to back into one token stream, cut
// into windows of seq_len + 1 tokens that step by seq_len (inputs = window[0..seq), targets = window[1..seq]).
// A validation split holds out every val_every-th document of each dataset (documents val_every - 1,
// 2 * val_every - 1, ...); the training stream is the other documents, packed the same way.
//
// Sample i of the global stream is a pure function of (seed, i) and the datasets:
//   1. Blend: sample i goes to dataset k = choice[i mod P], as the j-th sample of that dataset with
//      j = (i div P) * quota[k] + (samples of k earlier in the period). quota[k] is weight[k] * P rounded by
//      largest remainders (the weights are quantised to 1/P), and choice[] is built once, Megatron-style: each
//      slot goes to the dataset whose realised share lags its quota the most. After any n samples, dataset
//      k has had weight[k] * n samples within 1/P * n + 1.
//   2. Epochs: dataset sample j is window perm_{k,e}(j mod windows_k) of epoch e = j div windows_k, where
//      perm_{k,e} is a seeded pseudo-random permutation (a Feistel network with cycle walking: O(1) time and
//      no memory per lookup), different for every dataset and epoch. Every window is seen once per epoch.
// Nothing depends on earlier calls, so a resumed run, at any data-parallel size, sees what an uninterrupted
// one would have. Data-parallel rank r of D with micro-batch B takes samples consumed + r*B .. + B - 1 and
// every rank then adds D * B to consumed: over a global batch the ranks together read samples
// consumed .. consumed + global_batch - 1 in the same order at any D.
//
// Token ids are uint32 on disk; sample() converts them to the model's int32 and checks each is below the
// model's vocabulary size.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace polyllama {

class ShardReader;

// A dataset directory and its blend weight (normalised over the sources; < 0: not given).
struct DataSource {
  std::string dir;
  double weight = -1;
};
// "DIR" or "WEIGHT:DIR" per item (e.g. {"0.9:data/zh", "0.1:data/en"}). Weights must be given for all or
// none; none means proportional to each dataset's number of windows (plain concatenation).
std::vector<DataSource> parse_data_sources(const std::vector<std::string>& specs);

enum class DataSplit { train, validation };

struct SamplerConfig {
  int64_t seq_len = 0;           // tokens per input row; windows hold seq_len + 1
  uint64_t seed = 1234;          // window order
  int64_t val_every = 0;         // every Nth document is validation (0: no validation split)
  int64_t vocab_size = 0;        // the model's vocabulary; 0: the datasets' tokenizer's
  int64_t blend_period = 10000;  // P above: blend weights are quantised to 1 / P
  void validate() const;
};

class PackedSampler {
 public:
  // Opens every source (refusing a dataset whose tokenizer checksum differs from tokenizer_checksum, or, when
  // that is empty, from the first dataset's) and prepares the split.
  PackedSampler(const std::vector<DataSource>& sources, const SamplerConfig& cfg, DataSplit split,
                const std::string& tokenizer_checksum);
  ~PackedSampler();
  PackedSampler(PackedSampler&&) noexcept;
  PackedSampler& operator=(PackedSampler&&) noexcept;

  // Sample global_index of the blended, shuffled stream: inputs[t] = w[t], targets[t] = w[t + 1], t < seq_len,
  // for its window w. Thread-safe (no state changes).
  void sample(int64_t global_index, int32_t* inputs, int32_t* targets) const;
  // The micro-batch of data-parallel rank dp_rank: rows b < micro_batch are samples
  // first_sample(consumed, dp_rank, micro_batch) + b. inputs and targets are (micro_batch, seq_len).
  void micro_batch(int64_t consumed, int dp_rank, int64_t micro_batch, int32_t* inputs, int32_t* targets) const;
  static int64_t first_sample(int64_t consumed, int dp_rank, int64_t micro_batch) {
    return consumed + static_cast<int64_t>(dp_rank) * micro_batch;
  }

  // Every window of the split once, in order (dataset 0's, then dataset 1's, ...): for evaluation.
  // A bounded evaluation that should follow the blend can read sample(0 .. n-1) of a validation sampler instead.
  int64_t windows() const;
  int64_t tokens() const;  // tokens in the split, over all datasets
  void window(int64_t w, int32_t* inputs, int32_t* targets) const;
  void window(int dataset, int64_t w, int32_t* inputs, int32_t* targets) const;  // per-dataset loss

  int datasets() const { return static_cast<int>(sets_.size()); }
  int64_t windows(int dataset) const;
  int64_t tokens(int dataset) const;   // tokens in the split's stream
  int64_t documents(int dataset) const;  // documents in the split
  double weight(int dataset) const;     // normalised blend weight (after quantisation: quota / period)
  const ShardReader& reader(int dataset) const;
  int64_t seq_len() const { return cfg_.seq_len; }
  int64_t vocab_size() const { return vocab_; }
  const std::string& tokenizer_checksum() const { return checksum_; }

  // Where sample global_index comes from (for tests and logs).
  struct Origin {
    int dataset = 0;
    int64_t dataset_sample = 0, epoch = 0, window = 0;
  };
  Origin locate(int64_t global_index) const;

 private:
  struct Set;
  void emit(const Set& s, int64_t w, int32_t* inputs, int32_t* targets) const;
  SamplerConfig cfg_;
  DataSplit split_;
  int64_t vocab_ = 0;
  std::string checksum_;
  std::vector<std::unique_ptr<Set>> sets_;
  // blend schedule over one period (empty with one dataset)
  std::vector<int64_t> quota_;
  std::vector<int32_t> choice_;
  std::vector<int64_t> rank_in_period_;
};

// A pseudo-random permutation of [0, n) keyed by `key`: x -> its image, O(1) time, no memory.
int64_t feistel_permute(uint64_t key, int64_t n, int64_t x);

}  // namespace polyllama
