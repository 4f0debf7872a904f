#pragma once
// Inference over a LlamaModel's weights with a KV cache: prompts are appended in chunks (prefill), then one
// token per row per step (decode), each step costing O(cache) instead of a full recomputation. The layers are the
// model's own (layer_forward in llama_layer.hpp, with the decoder's buffers reused in place); the decoder adds
// only the cache, the positions and spans of padded rows, and the logits of the last positions.
//
// Rows of a batch share one cache length; prompts of different lengths are left-padded. Row b's first pad[b]
// cache positions are padding: its real tokens take RoPE positions 0, 1, ... from cache position pad[b] on, and
// every real query's attention starts at key pad[b] (AttnSpan::kv_start), so a row computes what it computes
// alone. Everything goes through the backend's op table and its memory (Arena, upload/download), so the same
// code runs where the weights live in device memory.
//
// Tensor parallelism (model.tp() > 1): every tp rank runs the decoder in step on the same tokens with its Megatron
// shards: its heads and kv heads (its KV cache holds only those), its MLP features, its vocabulary rows. The
// row-parallel o_proj and down_proj outputs and the vocab-parallel embedding are summed over tp by the model's
// tensor collectives (NCCL on GPUs); the head's
// logits, a vocabulary slice per rank, are all-gathered into whole host rows, bitwise the same on every tp rank,
// so a sampler fed them draws the same token everywhere.
#include <cstdint>
#include <vector>

#include "polyllama/core/arena.hpp"
#include "polyllama/model/llama.hpp"

namespace polyllama {

struct DecodeLimits {
  int64_t max_batch = 1;    // rows per batch
  int64_t max_chunk = 64;   // tokens per row per forward (a longer append is split into chunks)
  int64_t max_cache = 0;    // cache positions per row (padding included)
  bool all_logits = false;  // append() may return the logits of every new position (tests), not only the last
};

class LlamaDecoder {
 public:
  // Sizes the cache and every activation once (nothing is allocated per step).
  LlamaDecoder(LlamaModel& model, const DecodeLimits& limits);

  // Starts `batch` rows over an empty cache of `capacity` positions (<= max_cache); row b's first pad[b] cache
  // positions will hold padding (pad may be empty: none).
  void begin(int64_t batch, int64_t capacity, const std::vector<int32_t>& pad);
  // Appends T tokens to every row (tokens (batch, T), host). logits_out (host) receives (batch, V): each row's
  // logits after its last new token; with all_rows, (batch, T, V): after every new token (needs all_logits).
  void append(const int32_t* tokens, int64_t T, std::vector<double>* logits_out, bool all_rows = false);
  // The same, but logits_out (batch, V) receives row b's logits after its new token at[b] (0 <= at[b] < T): rows
  // of different lengths appended together, right-padded; what a row holds after at[b] is padding it never reads
  // (attention is causal), so its logits are those of its own tokens alone.
  void append_at(const int32_t* tokens, int64_t T, const std::vector<int64_t>& at, std::vector<double>* logits_out);
  // Row b is finished: what is appended to it from now on is padding (position 0, attending to itself only), so
  // a finished row never runs past max_position_embeddings while the others continue.
  void retire(int64_t row);

  // Shared prefixes (evaluation: every question of a subject starts with the same few-shot examples): after a
  // prefix was appended to one row, expand(batch) copies its cache to rows 1 .. batch-1, so each row continues
  // from it; rewind(length, batch) keeps the first `length` positions of rows [0, batch) and drops the rest, so
  // the next rows continue from the same prefix without computing it again (the rows' first `length` positions
  // must hold the same tokens, as after expand; batch may be any count up to the rows begin or expand set up,
  // since appending to fewer rows leaves the others' first positions as they were).
  void expand(int64_t batch);
  void rewind(int64_t length, int64_t batch);

  // Continuous batching (serve): requests join and leave a running batch. admit() puts the first n cache positions
  // of row src_row of another decoder over the same model (a prompt prefilled alone) into retired row `row`, as
  // its last n positions (n <= length(); the row's padding becomes length() - n), and makes the row live again.
  // shift(delta) moves every live row's positions by delta (> 0: later, its padding grows; < 0: earlier, which
  // every live row's padding must allow) and the length with them, so a batch can make room for a longer
  // prompt and give back the padding that finished rows left. A row's keys keep their RoPE positions either way.
  void admit(int64_t row, const LlamaDecoder& src, int64_t src_row, int64_t n);
  void shift(int64_t delta);
  bool live(int64_t row) const { return !retired_[static_cast<size_t>(row)]; }
  int64_t padding(int64_t row) const { return pad_[static_cast<size_t>(row)]; }

  int64_t length() const { return len_; }  // cache positions filled, padding included
  int64_t capacity() const { return cap_; }
  int64_t batch() const { return B_; }
  size_t cache_bytes() const { return cache_.bytes(); }
  size_t activation_bytes() const { return acts_.bytes(); }

 private:
  // One chunk of new positions [row0, row0 + Tc) of an append of T_total. all_rows: logits of every position into
  // logits_out; else row b's hidden state after its position at[b], when it falls in this chunk, is kept for the
  // logits taken after the last chunk (head_logits).
  void forward_chunk(const int32_t* tokens, int64_t Tc, bool all_rows, int64_t row0, int64_t T_total,
                     std::vector<double>* logits_out, const std::vector<int64_t>& at);
  void head_logits(std::vector<double>* logits_out);
  void append_rows(const int32_t* tokens, int64_t T, bool all_rows, const std::vector<int64_t>& at,
                   std::vector<double>* logits_out);
  int64_t local_kv_width() const { return KV_ * cfg_.head_dim(); }
  // The logits (rows, this rank's vocabulary slice), as whole host rows (rows, V) gathered over tp.
  void download_logits(Tensor logits, int64_t rows, double* dst);
  // Layer l's keys (kv = 0) or values (kv = 1) as (max_batch * cap_, KV * D) rows.
  Tensor cache_rows(size_t l, int kv) const;

  LlamaModel& model_;
  Backend& be_;
  ModelConfig cfg_;
  DecodeLimits lim_;
  const TensorParallel& tp_;
  const ParallelContext* par_ = nullptr;  // tp(): the host-memory gather of the logits
  int64_t H_ = 0, KV_ = 0, V_ = 0, v0_ = 0;  // this rank's heads, kv heads, vocab rows from v0_
  std::vector<LayerWeights> layers_;
  VocabParallelEmbedding embedding_;
  // cache_ and acts_ in the model's compute dtype; stats_ (rstd, attention state, rope tables, logits) in its
  // parameter dtype, as the training forward keeps its statistics.
  Arena cache_, acts_, stats_;
  std::vector<int> k_cache_, v_cache_;  // per layer, (max_batch * max_cache, KV * D)
  int x_ = -1, ln_ = -1, q_ = -1, k_ = -1, v_ = -1, att_ = -1, gate_ = -1, up_ = -1, last_ = -1;  // acts_
  int rstd_ = -1, saved_ = -1, logits_ = -1, cos_ = -1, sin_ = -1;                               // stats_

  int64_t B_ = 0, cap_ = 0, len_ = 0;
  int64_t rows_ = 0;  // rows whose cache holds what begin() or expand() put there (rewind's limit)
  std::vector<int32_t> pad_;
  std::vector<uint8_t> retired_;
  std::vector<int32_t> positions_, kv_start_;  // (B, Tc) of the current chunk, host
  std::vector<char> host_logits_;              // staging for download
  std::vector<double> gathered_;               // tp: every rank's slice of the rows, rank after rank
};

}  // namespace polyllama
