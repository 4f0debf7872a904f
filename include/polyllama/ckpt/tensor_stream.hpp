#pragma once
// Checkpoint tensors a row block at a time, for tools that must not hold a whole model (resize-vocab): a
// reader of row ranges through HDF5 hyperslabs, and a writer that fills each tensor of a new file row by row.
// Rows are the first dim; a tensor of shape (d0, d1, ...) is d0 rows of d1 * ... values. fp32 only, as
// checkpoints store. One process: the writer refuses communicators of more than one rank.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/ckpt/checkpoint.hpp"

namespace polyllama {

class TensorFileReader {
 public:
  explicit TensorFileReader(const std::string& path);
  ~TensorFileReader();
  // Every tensor of the file (not tokenizer.model), in the file's (name) order.
  std::vector<std::string> names() const;
  std::vector<int64_t> shape(const std::string& name) const;
  // Rows per HDF5 chunk: reads of whole chunks touch each chunk once.
  int64_t chunk_rows(const std::string& name) const;
  // Rows [row0, row0 + rows) into out (rows x row length), through the chunks' checksums.
  void read_rows(const std::string& name, int64_t row0, int64_t rows, float* out) const;
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

class TensorFileWriter {
 public:
  explicit TensorFileWriter(const std::string& path);
  ~TensorFileWriter();
  // Starts tensor `name` of full shape `shape`; its rows then come through write_rows, in order.
  void begin(const std::string& name, const std::vector<int64_t>& shape);
  void write_rows(const float* data, int64_t rows);
  // Checks every row came; the next begin() or finish() calls it.
  void end();
  void write_meta(const CheckpointMeta& meta);
  // Flushes, closes, re-reads every tensor through its checksums and compares it with what was written
  // (a 64-bit hash of the rows); fails naming the first tensor that differs.
  void finish();

 private:
  void begin_tensor(const std::string& name, const std::vector<int64_t>& shape);
  void write_rows_unguarded(const float* data, int64_t rows);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace polyllama
