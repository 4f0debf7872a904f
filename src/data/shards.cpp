#include "polyllama/data/shards.hpp"
#include "polyllama/core/atomic_file.hpp"

#include <fcntl.h>
#include <omp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace polyllama {

namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL, kFnvPrime = 0x100000001b3ULL;

uint64_t fnv1a64_update(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}

std::string hex64(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string shard_name(int writer_id, size_t k) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "part-%05d-%05zu", writer_id, k);
  return buf;
}

void write_all(std::FILE* f, const void* data, size_t bytes, const std::string& path) {
  if (bytes && std::fwrite(data, 1, bytes, f) != bytes)
    fail_runtime("cannot write " + path + ": " + std::strerror(errno) + " (disk full?)", __FILE__, __LINE__);
}

template <typename T> T field(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) fail_input(where + ": missing field '" + key + "'");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail_input(where + ": field '" + key + "' has the wrong type (" + it->dump() + ")");
  }
}

}  // namespace

// ---- metadata ----

void write_dataset_metadata(const std::string& dir, const DatasetMeta& m) {
  json shards = json::array(), inputs = json::array();
  for (const ShardInfo& s : m.shards)
    shards.push_back({{"name", s.name}, {"documents", s.documents}, {"tokens", s.tokens}, {"checksum", s.checksum}});
  for (const InputCounts& c : m.inputs)
    inputs.push_back({{"path", c.path}, {"format", c.format}, {"gzip", c.gzip}, {"bytes", c.bytes},
                      {"documents", c.documents}, {"tokens", c.tokens}, {"skipped", c.skipped}, {"empty", c.empty}});
  json options = json::parse(m.options_json, nullptr, false);
  if (options.is_discarded()) options = json::object();
  const json j = {{"format", kShardFormatName},
                  {"format_version", m.format_version},
                  {"token_dtype", "uint32"},
                  {"index_dtype", "uint64"},
                  {"tokenizer",
                   {{"checksum", m.tokenizer_checksum}, {"vocab_size", m.vocab_size}, {"bos_id", m.bos_id},
                    {"eos_id", m.eos_id}, {"file", "tokenizer.model"}}},
                  {"documents", m.documents},
                  {"tokens", m.tokens},
                  {"skipped", m.skipped},
                  {"empty", m.empty},
                  {"input_bytes", m.bytes},
                  {"shards", shards},
                  {"inputs", inputs},
                  {"options", options}};
  write_file_atomically(dir + "/metadata.json", j.dump(1) + "\n");
}

DatasetMeta read_dataset_metadata(const std::string& dir) {
  const std::string path = dir + "/metadata.json";
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    const bool unfinished = fs::is_directory(dir + ".tmp");
    fail_input("not a token dataset: cannot read " + path +
               (unfinished ? " (" + dir + ".tmp exists: the `polyllama data` run writing it did not finish)"
                           : " (make one with `polyllama data --out " + dir + "`)"));
  }
  json j = json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail_input(path + ": not valid JSON");
  if (j.value("format", std::string()) != kShardFormatName)
    fail_input(path + ": field 'format' is not \"" + std::string(kShardFormatName) + "\"");
  DatasetMeta m;
  m.format_version = field<int>(j, "format_version", path);
  if (m.format_version < 1 || m.format_version > kShardFormatVersion)
    fail_input(path + ": format_version " + std::to_string(m.format_version) + " is not supported (this polyllama "
               "reads up to " + std::to_string(kShardFormatVersion) + "; re-run `polyllama data`)");
  if (field<std::string>(j, "token_dtype", path) != "uint32" || field<std::string>(j, "index_dtype", path) != "uint64")
    fail_input(path + ": token_dtype must be uint32 and index_dtype uint64");
  const json tok = field<json>(j, "tokenizer", path);
  m.tokenizer_checksum = field<std::string>(tok, "checksum", path + " tokenizer");
  m.vocab_size = field<int64_t>(tok, "vocab_size", path + " tokenizer");
  m.bos_id = field<int32_t>(tok, "bos_id", path + " tokenizer");
  m.eos_id = field<int32_t>(tok, "eos_id", path + " tokenizer");
  m.documents = field<int64_t>(j, "documents", path);
  m.tokens = field<int64_t>(j, "tokens", path);
  m.skipped = field<int64_t>(j, "skipped", path);
  m.empty = field<int64_t>(j, "empty", path);
  m.bytes = field<int64_t>(j, "input_bytes", path);
  for (const json& s : field<json>(j, "shards", path)) {
    const std::string where = path + " shard";
    m.shards.push_back({field<std::string>(s, "name", where), field<int64_t>(s, "documents", where),
                        field<int64_t>(s, "tokens", where), field<std::string>(s, "checksum", where)});
  }
  for (const json& c : field<json>(j, "inputs", path)) {
    const std::string where = path + " input";
    InputCounts ic;
    ic.path = field<std::string>(c, "path", where);
    ic.format = field<std::string>(c, "format", where);
    ic.gzip = field<bool>(c, "gzip", where);
    ic.bytes = field<int64_t>(c, "bytes", where);
    ic.documents = field<int64_t>(c, "documents", where);
    ic.tokens = field<int64_t>(c, "tokens", where);
    ic.skipped = field<int64_t>(c, "skipped", where);
    ic.empty = field<int64_t>(c, "empty", where);
    m.inputs.push_back(ic);
  }
  if (j.contains("options")) m.options_json = j["options"].dump();
  return m;
}

// ---- writer ----

ShardWriter::ShardWriter(std::string dir, int writer_id, int64_t max_shard_tokens)
    : dir_(std::move(dir)), writer_id_(writer_id), max_tokens_(max_shard_tokens) {
  if (max_tokens_ < 1) fail_input("max shard tokens must be >= 1");
}

ShardWriter::~ShardWriter() {
  if (tok_) std::fclose(tok_);
  if (idx_) std::fclose(idx_);
}

void ShardWriter::open_shard() {
  ShardInfo s;
  s.name = shard_name(writer_id_, shards_.size());
  const std::string base = dir_ + "/" + s.name;
  tok_ = std::fopen((base + ".tok").c_str(), "wb");
  idx_ = std::fopen((base + ".idx").c_str(), "wb");
  if (!tok_ || !idx_) fail_runtime("cannot create " + base + ".tok/.idx: " + std::strerror(errno), __FILE__, __LINE__);
  std::setvbuf(tok_, nullptr, _IOFBF, 1 << 20);
  std::setvbuf(idx_, nullptr, _IOFBF, 1 << 16);
  const uint64_t zero = 0;
  write_all(idx_, &zero, sizeof zero, base + ".idx");
  hash_ = kFnvOffset;
  shards_.push_back(s);
}

void ShardWriter::close_shard() {
  ShardInfo& s = shards_.back();
  s.checksum = hex64(hash_);
  const std::string base = dir_ + "/" + s.name;
  const bool ok = std::fclose(tok_) == 0 && std::fclose(idx_) == 0;
  tok_ = idx_ = nullptr;
  if (!ok) fail_runtime("cannot write " + base + ".tok/.idx: " + std::strerror(errno), __FILE__, __LINE__);
}

void ShardWriter::append_tokens(const int32_t* ids, int64_t n) {
  if (!tok_) open_shard();
  ShardInfo& s = shards_.back();
  scratch_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) scratch_[static_cast<size_t>(i)] = static_cast<uint32_t>(ids[i]);
  const size_t bytes = scratch_.size() * sizeof(uint32_t);
  write_all(tok_, scratch_.data(), bytes, dir_ + "/" + s.name + ".tok");
  hash_ = fnv1a64_update(hash_, scratch_.data(), bytes);
  s.tokens += n;
}

void ShardWriter::end_document(uint32_t eos) {
  const int32_t e = static_cast<int32_t>(eos);
  append_tokens(&e, 1);
  ShardInfo& s = shards_.back();
  s.documents += 1;
  const auto end = static_cast<uint64_t>(s.tokens);
  write_all(idx_, &end, sizeof end, dir_ + "/" + s.name + ".idx");
  if (s.tokens >= max_tokens_) close_shard();
}

void ShardWriter::finish() {
  if (tok_) close_shard();
}

// ---- reader ----

struct ShardReader::Shard {
  ShardInfo info;
  const uint32_t* tok = nullptr;  // (tokens)
  const uint64_t* idx = nullptr;  // (documents + 1)
  size_t tok_bytes = 0, idx_bytes = 0;
  int64_t doc_base = 0, token_base = 0;  // first document and token of the shard in the dataset
};

namespace {

const void* map_file(const std::string& path, size_t expected_bytes, const std::string& what) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail_input("cannot open " + path + ": " + std::strerror(errno) + " (" + what + ")");
  struct stat st {};
  ::fstat(fd, &st);
  if (static_cast<size_t>(st.st_size) != expected_bytes) {
    ::close(fd);
    fail_input(path + " has " + std::to_string(st.st_size) + " bytes, metadata.json implies " +
               std::to_string(expected_bytes) + " (" + what + "; truncated or from another run?)");
  }
  void* p = ::mmap(nullptr, expected_bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) fail_runtime("cannot map " + path + ": " + std::strerror(errno), __FILE__, __LINE__);
  return p;
}

}  // namespace

ShardReader::ShardReader(const std::string& dir, const std::string& expected_tokenizer_checksum) : dir_(dir) {
  meta_ = read_dataset_metadata(dir);
  const std::string mpath = dir + "/metadata.json";
  if (!expected_tokenizer_checksum.empty() && meta_.tokenizer_checksum != expected_tokenizer_checksum)
    fail_input(dir + ": tokenized with tokenizer " + meta_.tokenizer_checksum + ", but the model's tokenizer is " +
               expected_tokenizer_checksum + "; re-run `polyllama data` with the model's tokenizer");
  int64_t docs = 0, toks = 0;
  for (const ShardInfo& info : meta_.shards) {
    if (info.documents < 1 || info.tokens < info.documents)
      fail_input(mpath + ": shard " + info.name + " has " + std::to_string(info.documents) + " documents and " +
                 std::to_string(info.tokens) + " tokens");
    Shard s;
    s.info = info;
    s.doc_base = docs;
    s.token_base = toks;
    s.tok_bytes = static_cast<size_t>(info.tokens) * sizeof(uint32_t);
    s.idx_bytes = static_cast<size_t>(info.documents + 1) * sizeof(uint64_t);
    shards_.push_back(s);  // mapped below; the destructor unmaps what was mapped
    Shard& m = shards_.back();
    m.tok = static_cast<const uint32_t*>(map_file(dir + "/" + info.name + ".tok", m.tok_bytes, "token ids"));
    m.idx = static_cast<const uint64_t*>(map_file(dir + "/" + info.name + ".idx", m.idx_bytes, "document index"));
    uint64_t prev = m.idx[0];
    bool ok = prev == 0;
    for (int64_t d = 1; ok && d <= info.documents; ++d) {
      ok = m.idx[d] > prev;
      prev = m.idx[d];
    }
    if (!ok || prev != static_cast<uint64_t>(info.tokens))
      fail_input(dir + "/" + info.name + ".idx: document offsets are not increasing from 0 to " +
                 std::to_string(info.tokens) + " (corrupt)");
    docs += info.documents;
    toks += info.tokens;
  }
  if (docs != meta_.documents || toks != meta_.tokens)
    fail_input(mpath + ": shards hold " + std::to_string(docs) + " documents and " + std::to_string(toks) +
               " tokens, the totals say " + std::to_string(meta_.documents) + " and " + std::to_string(meta_.tokens));
}

void ShardReader::unmap() {
  for (Shard& s : shards_) {
    if (s.tok) ::munmap(const_cast<uint32_t*>(s.tok), s.tok_bytes);
    if (s.idx) ::munmap(const_cast<uint64_t*>(s.idx), s.idx_bytes);
  }
  shards_.clear();
}
ShardReader::~ShardReader() { unmap(); }
ShardReader::ShardReader(ShardReader&& o) noexcept
    : dir_(std::move(o.dir_)), meta_(std::move(o.meta_)), shards_(std::move(o.shards_)) {
  o.shards_.clear();
}
ShardReader& ShardReader::operator=(ShardReader&& o) noexcept {
  if (this != &o) {
    unmap();
    dir_ = std::move(o.dir_);
    meta_ = std::move(o.meta_);
    shards_ = std::move(o.shards_);
    o.shards_.clear();
  }
  return *this;
}

size_t ShardReader::shard_of_doc(int64_t d) const {
  const auto it = std::upper_bound(shards_.begin(), shards_.end(), d,
                                   [](int64_t v, const Shard& s) { return v < s.doc_base; });
  return static_cast<size_t>(it - shards_.begin()) - 1;
}

size_t ShardReader::shard_of_token(int64_t t) const {
  const auto it = std::upper_bound(shards_.begin(), shards_.end(), t,
                                   [](int64_t v, const Shard& s) { return v < s.token_base; });
  return static_cast<size_t>(it - shards_.begin()) - 1;
}

int64_t ShardReader::doc_offset(int64_t d) const {
  if (d < 0 || d > documents())
    fail_runtime(dir_ + ": document " + std::to_string(d) + " out of range", __FILE__, __LINE__);
  if (d == documents()) return tokens();
  const Shard& s = shards_[shard_of_doc(d)];
  return s.token_base + static_cast<int64_t>(s.idx[d - s.doc_base]);
}

const uint32_t* ShardReader::doc_tokens(int64_t d) const {
  if (d < 0 || d >= documents())
    fail_runtime(dir_ + ": document " + std::to_string(d) + " out of range", __FILE__, __LINE__);
  const Shard& s = shards_[shard_of_doc(d)];
  return s.tok + s.idx[d - s.doc_base];
}

void ShardReader::read_tokens(int64_t offset, int64_t n, uint32_t* out) const {
  if (offset < 0 || n < 0 || offset + n > tokens())
    fail_runtime(dir_ + ": tokens [" + std::to_string(offset) + ", " + std::to_string(offset + n) + ") out of range",
                 __FILE__, __LINE__);
  while (n > 0) {
    const Shard& s = shards_[shard_of_token(offset)];
    const int64_t local = offset - s.token_base, take = std::min(n, s.info.tokens - local);
    std::memcpy(out, s.tok + local, static_cast<size_t>(take) * sizeof(uint32_t));
    out += take;
    offset += take;
    n -= take;
  }
}

void ShardReader::verify_checksums() const {
  for (const Shard& s : shards_)
    if (hex64(fnv1a64_update(kFnvOffset, s.tok, s.tok_bytes)) != s.info.checksum)
      fail_input(dir_ + "/" + s.info.name + ".tok fails its checksum (metadata " + s.info.checksum + "): corrupt");
}

// ---- pipeline ----

void ShardPipelineOptions::validate() const {
  if (max_shard_tokens < 1) fail_input("--max-shard-tokens must be >= 1");
  if (threads < 1) fail_input("--threads must be >= 1");
  if (vocab_size < 1 || eos_id >= static_cast<uint64_t>(vocab_size))
    fail_input("tokenizer: eos id " + std::to_string(eos_id) + " outside vocabulary of " + std::to_string(vocab_size));
}

std::string rank_result_to_json(const RankResult& r) {
  json shards = json::array(), inputs = json::array();
  for (const ShardInfo& s : r.shards) shards.push_back({s.name, s.documents, s.tokens, s.checksum});
  for (const InputCounts& c : r.inputs)
    inputs.push_back({c.path, c.format, c.gzip, c.bytes, c.documents, c.tokens, c.skipped, c.empty});
  return json{{"shards", shards},
              {"inputs", inputs},
              {"examples", r.skip_examples},
              {"seconds", r.seconds},
              {"invalid_utf8", {r.invalid_utf8.bytes, r.invalid_utf8.lines, r.invalid_utf8.first}},
              {"largest_chunk", r.largest_chunk}}
      .dump();
}

RankResult rank_result_from_json(const std::string& text) {
  const json j = json::parse(text);
  RankResult r;
  for (const json& s : j.at("shards"))
    r.shards.push_back({s[0].get<std::string>(), s[1].get<int64_t>(), s[2].get<int64_t>(), s[3].get<std::string>()});
  for (const json& c : j.at("inputs"))
    r.inputs.push_back({c[0].get<std::string>(), c[1].get<std::string>(), c[2].get<bool>(), c[3].get<int64_t>(),
                        c[4].get<int64_t>(), c[5].get<int64_t>(), c[6].get<int64_t>(), c[7].get<int64_t>()});
  r.skip_examples = j.at("examples").get<std::vector<std::string>>();
  r.seconds = j.at("seconds").get<double>();
  const json& u = j.at("invalid_utf8");
  r.invalid_utf8 = {u[0].get<int64_t>(), u[1].get<int64_t>(), u[2].get<std::string>()};
  r.largest_chunk = j.at("largest_chunk").get<int64_t>();
  return r;
}

RankResult tokenize_to_shards(const std::vector<InputFile>& inputs, const TextInputOptions& in_opts,
                              const ShardPipelineOptions& opts, const ChunkedEncode& encode, const std::string& dir,
                              int world_rank, int world_size,
                              const std::function<void(const PipelineProgress&)>& progress) {
  opts.validate();
  const double t0 = now_seconds();
  const std::vector<InputPiece> pieces = plan_pieces(inputs, in_opts, world_rank, world_size);
  RankResult res;
  for (const InputFile& in : inputs)
    res.inputs.push_back({in.path, in.format == InputFormat::jsonl ? "jsonl" : "text", in.gzip, 0, 0, 0, 0, 0});
  for (const InputPiece& p : pieces) res.inputs[static_cast<size_t>(p.file)].bytes += p.end - p.begin;

  DocumentReader reader(inputs, pieces, in_opts);
  ShardWriter writer(dir, world_rank, opts.max_shard_tokens);
  DocumentChunks chunks(encode.cutter, encode.chunk_bytes);
  // Chunks of documents are read in batches, encoded in parallel, and written in order, so the output does not
  // depend on the thread count. A chunk is a whole short document or a piece of a long one (`last`: the
  // document ends with it).
  struct Unit {
    std::string text;
    int64_t file = 0;
    bool first = true, last = true;
  };
  const size_t batch_bytes = size_t{2} << 20, batch_units = 4096;
  std::vector<Unit> units;
  std::vector<std::vector<int32_t>> ids;
  std::string part_text;
  DocumentReader::Part part;
  bool doc_open = false, at_end = false;  // a document is being cut; its last part has been added
  int64_t doc_file = 0;
  PipelineProgress prog;
  prog.bytes_total = reader.bytes_total();
  for (;;) {
    size_t n = 0, bytes = 0;
    const size_t max_bytes = batch_bytes * static_cast<size_t>(opts.threads);
    while (n < batch_units * static_cast<size_t>(opts.threads) && bytes < max_bytes) {
      if (units.size() <= n) {
        units.emplace_back();
        ids.emplace_back();
      }
      if (doc_open) {
        Unit& u = units[n];
        if (chunks.next(u.text, u.first, at_end)) {
          u.file = doc_file;
          u.last = at_end;
          doc_open = !at_end;
          bytes += u.text.size();
          res.largest_chunk = std::max(res.largest_chunk, static_cast<int64_t>(u.text.size()));
          ++n;
          continue;
        }
        if (at_end || !reader.next_part(part_text, part, encode.chunk_bytes))
          fail_runtime("document reader: a document ended without text", __FILE__, __LINE__);
        chunks.add(part_text);
        at_end = part.last;
        continue;
      }
      if (!reader.next_part(part_text, part, encode.chunk_bytes)) break;
      chunks.start();
      chunks.add(part_text);
      doc_open = true;
      at_end = part.last;
      doc_file = part.file;
    }
    if (n == 0) break;
    std::vector<std::exception_ptr> errors(static_cast<size_t>(opts.threads));
#pragma omp parallel for schedule(dynamic, 1) num_threads(opts.threads) if (opts.threads > 1 && n > 1)
    for (size_t i = 0; i < n; ++i) {
      try {
        ids[i].clear();
        encode.encode(units[i].text, units[i].first, ids[i]);
      } catch (...) {
        errors[static_cast<size_t>(omp_get_thread_num())] = std::current_exception();
      }
    }
    for (const std::exception_ptr& e : errors)
      if (e) std::rethrow_exception(e);
    for (size_t i = 0; i < n; ++i) {
      const std::vector<int32_t>& v = ids[i];
      for (int32_t id : v)
        if (id < 0 || id >= opts.vocab_size)
          fail_runtime("tokenizer returned id " + std::to_string(id) + " outside its vocabulary of " +
                       std::to_string(opts.vocab_size), __FILE__, __LINE__);
      writer.append_tokens(v.data(), static_cast<int64_t>(v.size()));
      const int64_t eos = units[i].last ? 1 : 0;
      if (units[i].last) writer.end_document(opts.eos_id);
      res.inputs[static_cast<size_t>(units[i].file)].tokens += static_cast<int64_t>(v.size()) + eos;
      prog.tokens += static_cast<int64_t>(v.size()) + eos;
      prog.documents += eos;
      // Buffers that held a long document's chunk are released, so that slots do not each keep one.
      if (units[i].text.capacity() > (size_t{1} << 20)) std::string().swap(units[i].text);
      if (ids[i].capacity() > (size_t{1} << 18)) std::vector<int32_t>().swap(ids[i]);
    }
    prog.bytes_done = reader.bytes_done();
    if (progress) progress(prog);
  }
  writer.finish();
  for (size_t f = 0; f < inputs.size(); ++f) {
    res.inputs[f].documents = reader.counts()[f].documents;
    res.inputs[f].skipped = reader.counts()[f].skipped;
    res.inputs[f].empty = reader.counts()[f].empty;
  }
  res.shards = writer.shards();
  res.skip_examples = reader.skip_examples();
  res.invalid_utf8 = reader.invalid_utf8();
  res.seconds = now_seconds() - t0;
  return res;
}

RankResult tokenize_to_shards(const std::vector<InputFile>& inputs, const TextInputOptions& in_opts,
                              const ShardPipelineOptions& opts, const EncodeFn& encode, const std::string& dir,
                              int world_rank, int world_size,
                              const std::function<void(const PipelineProgress&)>& progress) {
  ChunkedEncode whole;
  whole.encode = [&encode](const std::string& text, bool, std::vector<int32_t>& ids) { encode(text, ids); };
  return tokenize_to_shards(inputs, in_opts, opts, whole, dir, world_rank, world_size, progress);
}

DatasetMeta merge_rank_results(const std::vector<RankResult>& ranks, DatasetMeta m) {
  m.shards.clear();
  m.inputs.clear();
  m.documents = m.tokens = m.skipped = m.empty = m.bytes = 0;
  for (const RankResult& r : ranks) {
    m.shards.insert(m.shards.end(), r.shards.begin(), r.shards.end());
    if (m.inputs.empty()) {
      m.inputs = r.inputs;
      continue;
    }
    if (r.inputs.size() != m.inputs.size()) fail_runtime("ranks disagree on the input list", __FILE__, __LINE__);
    for (size_t f = 0; f < r.inputs.size(); ++f) {
      InputCounts& c = m.inputs[f];
      c.bytes += r.inputs[f].bytes;
      c.documents += r.inputs[f].documents;
      c.tokens += r.inputs[f].tokens;
      c.skipped += r.inputs[f].skipped;
      c.empty += r.inputs[f].empty;
    }
  }
  for (const InputCounts& c : m.inputs) {
    m.documents += c.documents;
    m.tokens += c.tokens;
    m.skipped += c.skipped;
    m.empty += c.empty;
    m.bytes += c.bytes;
  }
  return m;
}

// ---- output directory ----

namespace {
std::string without_trailing_slash(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}
}  // namespace

std::string output_tmp_dir(const std::string& out) { return without_trailing_slash(out) + ".tmp"; }

std::string prepare_output_dir(const std::string& out_arg, bool overwrite) {
  const std::string out = without_trailing_slash(out_arg);
  if (out.empty()) fail_input("--out must not be empty");
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec)) fail_input("--out " + out + " exists and is not a directory");
    const bool empty = fs::is_empty(out, ec);
    const bool dataset = fs::exists(out + "/metadata.json", ec);
    if (!empty && !overwrite)
      fail_input("--out " + out + " already exists; pass --overwrite to replace it, or choose another directory");
    if (!empty && !dataset)
      fail_input("--out " + out + " is a non-empty directory that is not a token dataset (no metadata.json); "
                 "refusing to replace it");
  }
  const std::string tmp = output_tmp_dir(out);
  fs::remove_all(tmp, ec);
  if (ec) fail_runtime("cannot remove the stale " + tmp + ": " + ec.message(), __FILE__, __LINE__);
  fs::create_directories(tmp, ec);
  if (ec) fail_input("cannot create " + tmp + ": " + ec.message());
  return tmp;
}

void commit_output_dir(const std::string& tmp, const std::string& out_arg) {
  const std::string out = without_trailing_slash(out_arg);
  std::error_code ec;
  if (fs::exists(out, ec)) {  // prepare_output_dir allowed replacing it: move it aside, then swap in the new one
    const std::string old = out + ".old";
    fs::remove_all(old, ec);
    fs::rename(out, old, ec);
    if (ec) fail_runtime("cannot move " + out + " aside: " + ec.message(), __FILE__, __LINE__);
    fs::rename(tmp, out, ec);
    if (ec) fail_runtime("cannot rename " + tmp + " to " + out + ": " + ec.message(), __FILE__, __LINE__);
    fs::remove_all(old, ec);
    return;
  }
  fs::rename(tmp, out, ec);
  if (ec) fail_runtime("cannot rename " + tmp + " to " + out + ": " + ec.message(), __FILE__, __LINE__);
}

}  // namespace polyllama
