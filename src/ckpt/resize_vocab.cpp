#include "polyllama/ckpt/resize_vocab.hpp"

#include <algorithm>
#include <cmath>

#include "polyllama/ckpt/tensor_stream.hpp"
#include "polyllama/core/random.hpp"

namespace polyllama {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The parameter a tensor belongs to (the moments' prefix removed): its normal-init stream.
uint64_t stream_of(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : name) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h;
}

// Reads the old rows [0, old_rows) in chunk-sized blocks and hands each block to fn(row0, rows, data).
template <typename Fn>
void for_old_blocks(const TensorFileReader& r, const std::string& name, int64_t old_rows, int64_t cols, Fn&& fn) {
  const int64_t block = std::max<int64_t>(1, r.chunk_rows(name));
  std::vector<float> buf(static_cast<size_t>(block * cols));
  for (int64_t row0 = 0; row0 < old_rows; row0 += block) {
    const int64_t n = std::min(block, old_rows - row0);
    r.read_rows(name, row0, n, buf.data());
    fn(row0, n, buf.data());
  }
}

void copy_tensor(const TensorFileReader& r, TensorFileWriter& w, const std::string& name) {
  const std::vector<int64_t> sh = r.shape(name);
  w.begin(name, sh);
  int64_t cols = 1;
  for (size_t i = 1; i < sh.size(); ++i) cols *= sh[i];
  const int64_t rows = sh.empty() ? 1 : sh[0];
  if (rows * cols > 0) for_old_blocks(r, name, rows, cols, [&](int64_t, int64_t n, const float* d) { w.write_rows(d, n); });
  w.end();
}

// One vocabulary tensor: the old rows, then the new ones. Returns the passes over the old rows.
int64_t grow_tensor(const TensorFileReader& r, TensorFileWriter& w, const std::string& name, const VocabResize& p,
                    bool zero_new_rows) {
  const std::vector<int64_t> sh = r.shape(name);
  const int64_t file_rows = p.file_rows > 0 ? p.file_rows : p.old_rows;
  if (sh.size() != 2 || sh[0] != file_rows)
    fail_input(r.path() + ": '" + name + "' should have " + std::to_string(file_rows) +
               " rows (the config's vocab_size) and one more dim");
  const int64_t cols = sh[1], n_new = p.new_rows - p.old_rows;
  w.begin(name, {p.new_rows, cols});
  const VocabInit init = ends_with(name, "lm_head.weight") ? p.head_init : p.init;
  const bool subword = !zero_new_rows && init == VocabInit::subword_mean;
  // The new rows' sums are accumulated in fp64 in groups that fit the budget; the first pass also copies the
  // old rows and sums all of them (for `mean` and for pieces without a recipe).
  const int64_t group = subword ? std::max<int64_t>(1, std::min(n_new, p.budget_bytes / (cols * 8))) : n_new;
  std::vector<double> colsum(static_cast<size_t>(cols), 0.0), acc;
  std::vector<float> out;
  int64_t passes = 0;
  const uint64_t stream = stream_of(name);
  for (int64_t g0 = 0; g0 < std::max<int64_t>(n_new, 1); g0 += std::max<int64_t>(group, 1)) {
    const int64_t gn = std::min(group, n_new - g0);
    // Which new rows (in this group) each old row feeds, with multiplicity.
    std::vector<std::vector<int32_t>> feeds;
    if (subword) {
      feeds.assign(static_cast<size_t>(p.old_rows), {});
      for (int64_t k = 0; k < gn; ++k)
        for (const int32_t id : p.recipes[static_cast<size_t>(g0 + k)]) feeds[static_cast<size_t>(id)].push_back(static_cast<int32_t>(k));
      acc.assign(static_cast<size_t>(gn * cols), 0.0);
    }
    if (g0 == 0 || subword) {
      ++passes;
      for_old_blocks(r, name, p.old_rows, cols, [&](int64_t row0, int64_t n, const float* d) {
        if (g0 == 0) w.write_rows(d, n);
        for (int64_t i = 0; i < n; ++i) {
          const float* row = d + i * cols;
          if (g0 == 0)
            for (int64_t c = 0; c < cols; ++c) colsum[static_cast<size_t>(c)] += row[c];
          if (subword)
            for (const int32_t k : feeds[static_cast<size_t>(row0 + i)]) {
              double* a = acc.data() + static_cast<int64_t>(k) * cols;
              for (int64_t c = 0; c < cols; ++c) a[c] += row[c];
            }
        }
      });
    }
    out.assign(static_cast<size_t>(gn * cols), 0.0f);
    for (int64_t k = 0; k < gn && !zero_new_rows; ++k) {
      float* o = out.data() + k * cols;
      const int64_t row = p.old_rows + g0 + k;
      const size_t recipe_len = subword ? p.recipes[static_cast<size_t>(g0 + k)].size() : 0;
      if (init == VocabInit::normal) {
        for (int64_t c = 0; c < cols; ++c)
          o[c] = static_cast<float>(p.std * random_normal(p.seed, stream, static_cast<uint64_t>(row * cols + c)));
      } else if (recipe_len > 0) {
        const double* a = acc.data() + k * cols;
        for (int64_t c = 0; c < cols; ++c) o[c] = static_cast<float>(a[c] / static_cast<double>(recipe_len));
      } else {
        for (int64_t c = 0; c < cols; ++c)
          o[c] = static_cast<float>(colsum[static_cast<size_t>(c)] / static_cast<double>(p.old_rows));
      }
    }
    if (gn > 0) w.write_rows(out.data(), gn);
    if (n_new == 0) break;
  }
  w.end();
  return passes;
}

}  // namespace

void VocabResize::validate() const {
  if (old_rows <= 0 || new_rows < std::max(old_rows, file_rows) || (file_rows > 0 && file_rows < old_rows))
    fail_input("resize-vocab: " + std::to_string(new_rows) + " rows cannot replace " +
               std::to_string(std::max(old_rows, file_rows)) + " (the vocabulary only grows)");
  if (init == VocabInit::subword_mean || head_init == VocabInit::subword_mean) {
    PL_CHECK(static_cast<int64_t>(recipes.size()) == new_rows - old_rows, "one recipe per new row");
    for (const auto& rec : recipes)
      for (const int32_t id : rec)
        if (id < 0 || id >= old_rows)
          fail_input("resize-vocab: a new piece's subword id " + std::to_string(id) + " is not an old row");
  }
  if (!(std >= 0)) fail_input("resize-vocab: --std must be >= 0");
  if (budget_bytes <= 0) fail_input("resize-vocab: the memory budget must be positive");
}

bool is_vocab_tensor(const std::string& name) {
  for (const char* v : {"model.embed_tokens.weight", "lm_head.weight"})
    if (name == v || ends_with(name, std::string(".") + v)) return true;
  return false;
}

ResizeFileStats resize_tensor_file(const std::string& in, const std::string& out, const VocabResize& plan,
                                   bool zero_new_rows, const CheckpointMeta* meta) {
  plan.validate();
  const TensorFileReader r(in);
  TensorFileWriter w(out);
  ResizeFileStats s;
  for (const std::string& name : r.names()) {
    ++s.tensors;
    if (is_vocab_tensor(name)) {
      s.passes += grow_tensor(r, w, name, plan, zero_new_rows);
      ++s.grown;
    } else {
      copy_tensor(r, w, name);
    }
  }
  if (meta) w.write_meta(*meta);
  w.finish();
  return s;
}

}  // namespace polyllama
