#pragma once
// Token shards on disk (DESIGN.md section 5). A dataset directory holds
//   metadata.json          format and version, the tokenizer's checksum and vocabulary size, counts (documents,
//                          tokens, skipped, empty; per input file), and the shards in order
//   tokenizer.model        the SentencePiece model the ids come from
//   part-RRRRR-KKKKK.tok   token ids, uint32 little-endian: each document's tokens, then EOS, back to back
//   part-RRRRR-KKKKK.idx   document offsets into the .tok file, uint64 little-endian: documents + 1 entries,
//                          0 first and the shard's token count last (RRRRR: the writing rank, KKKKK: its shard)
// The dataset's token stream is its shards' concatenation in metadata order, and equals a serial
// tokenization of the inputs in the order given, whatever the number of ranks that wrote it. Documents never
// span shards. `polyllama data` writes into DIR.tmp and renames it to DIR when complete.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/data/chunk_cutter.hpp"
#include "polyllama/data/text_input.hpp"

namespace polyllama {

inline constexpr int kShardFormatVersion = 1;
inline constexpr const char* kShardFormatName = "polyllama-token-shards";

struct ShardInfo {
  std::string name;  // file stem in the dataset directory
  int64_t documents = 0, tokens = 0;
  std::string checksum;  // FNV-1a 64 (hex) of the .tok bytes
};

struct InputCounts {
  std::string path, format;  // format: "text" or "jsonl"
  bool gzip = false;
  int64_t bytes = 0, documents = 0, tokens = 0, skipped = 0, empty = 0;
};

struct DatasetMeta {
  int format_version = kShardFormatVersion;
  std::string tokenizer_checksum;
  int64_t vocab_size = 0;
  int32_t bos_id = -1, eos_id = -1;
  int64_t documents = 0, tokens = 0, skipped = 0, empty = 0, bytes = 0;  // totals over the inputs
  std::vector<ShardInfo> shards;
  std::vector<InputCounts> inputs;
  std::string options_json = "{}";  // how it was made (text field, ranks, seconds, ...), informational
};

// Writes DIR/metadata.json atomically (metadata.json.tmp, then rename).
void write_dataset_metadata(const std::string& dir, const DatasetMeta& meta);
// Reads and checks DIR/metadata.json (fail_input naming the file and field).
DatasetMeta read_dataset_metadata(const std::string& dir);

// One writer's shards: part-<writer>-<k>.tok/.idx, a new shard once max_shard_tokens are reached (documents are
// never split, so a shard may exceed it by one document).
class ShardWriter {
 public:
  ShardWriter(std::string dir, int writer_id, int64_t max_shard_tokens);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;
  // Appends ids[0..n) and then eos as one document.
  void add_document(const int32_t* ids, int64_t n, uint32_t eos) {
    append_tokens(ids, n);
    end_document(eos);
  }
  // The same in steps, for a document encoded chunk by chunk: its tokens, then eos.
  void append_tokens(const int32_t* ids, int64_t n);
  void end_document(uint32_t eos);
  // Flushes and closes the open shard; the writer is done.
  void finish();
  const std::vector<ShardInfo>& shards() const { return shards_; }

 private:
  void open_shard();
  void close_shard();
  std::string dir_;
  int writer_id_;
  int64_t max_tokens_;
  std::vector<ShardInfo> shards_;
  std::FILE* tok_ = nullptr;
  std::FILE* idx_ = nullptr;
  uint64_t hash_ = 0;
  std::vector<uint32_t> scratch_;
};

// Read-only view of a dataset directory: every shard memory-mapped.
class ShardReader {
 public:
  // Reads and validates DIR (metadata, file sizes, document offsets). When expected_tokenizer_checksum is
  // not empty, a dataset tokenized with another tokenizer is refused with both checksums named.
  explicit ShardReader(const std::string& dir, const std::string& expected_tokenizer_checksum = "");
  ~ShardReader();
  ShardReader(ShardReader&&) noexcept;
  ShardReader& operator=(ShardReader&&) noexcept;

  const std::string& dir() const { return dir_; }
  const DatasetMeta& meta() const { return meta_; }
  int64_t documents() const { return meta_.documents; }
  int64_t tokens() const { return meta_.tokens; }
  // Offset of document d's first token in the dataset's token stream; d == documents() gives tokens().
  int64_t doc_offset(int64_t d) const;
  int64_t doc_length(int64_t d) const { return doc_offset(d + 1) - doc_offset(d); }  // including its EOS
  // Document d's tokens (doc_length(d) of them, the last one EOS), inside the mapping.
  const uint32_t* doc_tokens(int64_t d) const;
  // Tokens [offset, offset + n) of the token stream, across shards.
  void read_tokens(int64_t offset, int64_t n, uint32_t* out) const;
  // Recomputes every shard's checksum (reads all of it); fail_input naming the first bad shard.
  void verify_checksums() const;

 private:
  struct Shard;
  void unmap();
  size_t shard_of_doc(int64_t d) const;
  size_t shard_of_token(int64_t t) const;
  std::string dir_;
  DatasetMeta meta_;
  std::vector<Shard> shards_;
};

// ---- the `polyllama data` pipeline, one rank at a time (ranks as plain ints; the CLI does the MPI) ----

// Text to token ids, without BOS/EOS; must be safe to call from several threads at once.
using EncodeFn = std::function<void(const std::string& text, std::vector<int32_t>& ids)>;

struct ShardPipelineOptions {
  int64_t max_shard_tokens = int64_t{1} << 28;  // 1 GiB .tok files
  int threads = 1;                              // documents encoded in parallel within the rank
  int64_t vocab_size = 0;                       // every id must be below it
  uint32_t eos_id = 2;
  void validate() const;
};

// What one rank did; ranks' results merge into a DatasetMeta.
struct RankResult {
  std::vector<ShardInfo> shards;
  std::vector<InputCounts> inputs;  // per input file: this rank's share of the counts
  std::vector<std::string> skip_examples;
  double seconds = 0;
  DocumentReader::Utf8Counts invalid_utf8;  // bytes of the inputs that are not UTF-8 (the first as FILE:LINE)
  int64_t largest_chunk = 0;                // bytes: the chunk size, or a longer stretch of text with no cut
};
std::string rank_result_to_json(const RankResult& r);
RankResult rank_result_from_json(const std::string& json);

struct PipelineProgress {
  int64_t bytes_done = 0, bytes_total = 0, documents = 0, tokens = 0;
};

// Reads world_rank's pieces of the inputs, encodes each document and writes world_rank's shards into dir.
// Documents stream through in chunks (ChunkedEncode), so memory does not grow with a document's length.
// `progress` (optional) is called after every batch of chunks.
RankResult tokenize_to_shards(const std::vector<InputFile>& inputs, const TextInputOptions& in_opts,
                              const ShardPipelineOptions& opts, const ChunkedEncode& encode, const std::string& dir,
                              int world_rank, int world_size,
                              const std::function<void(const PipelineProgress&)>& progress = {});
// The same with every document encoded whole by `encode`.
RankResult tokenize_to_shards(const std::vector<InputFile>& inputs, const TextInputOptions& in_opts,
                              const ShardPipelineOptions& opts, const EncodeFn& encode, const std::string& dir,
                              int world_rank, int world_size,
                              const std::function<void(const PipelineProgress&)>& progress = {});

// Every rank's result, in rank order, into the dataset metadata (shards in rank order, counts summed per input).
DatasetMeta merge_rank_results(const std::vector<RankResult>& ranks, DatasetMeta base);

// The output directory's life cycle (rank 0 only): prepare removes a stale OUT.tmp and creates it empty (an
// existing OUT is an error unless overwrite); commit renames OUT.tmp to OUT, replacing OUT when overwrite.
std::string prepare_output_dir(const std::string& out, bool overwrite);
std::string output_tmp_dir(const std::string& out);  // OUT.tmp, the directory every rank writes into
void commit_output_dir(const std::string& tmp, const std::string& out);

}  // namespace polyllama
