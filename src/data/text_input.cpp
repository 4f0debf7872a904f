#include "polyllama/data/text_input.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"

namespace polyllama {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_blank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

// Buffered forward reading of a plain file from an offset (the snapping scans near range boundaries).
class Scanner {
 public:
  Scanner(const std::string& path, int64_t offset) : f_(std::fopen(path.c_str(), "rb")) {
    if (!f_ || fseeko(f_, static_cast<off_t>(offset), SEEK_SET) != 0) fail_input("cannot read " + path);
  }
  ~Scanner() { std::fclose(f_); }
  int get() { return getc_unlocked(f_); }

 private:
  std::FILE* f_;
};

// First line start >= x.
int64_t next_line_start(const std::string& path, int64_t x, int64_t size) {
  if (x <= 0) return 0;
  if (x >= size) return size;
  Scanner s(path, x - 1);
  for (int64_t p = x - 1;; ++p) {
    const int c = s.get();
    if (c == EOF) return size;
    if (c == '\n') return p + 1;
  }
}

// First non-blank line that follows a blank line starting at or after x (see the header).
int64_t next_blank_doc_start(const std::string& path, int64_t x, int64_t size) {
  if (x <= 0) return 0;
  const int64_t first = next_line_start(path, x, size);
  if (first >= size) return size;
  Scanner s(path, first);
  bool seen_blank = false, line_blank = true;
  int64_t line_start = first;
  for (int64_t p = first;; ++p) {
    const int c = s.get();
    if (c == EOF) return size;
    if (c == '\n') {
      seen_blank = seen_blank || line_blank;
      line_blank = true;
      line_start = p + 1;
    } else if (line_blank && c != ' ' && c != '\t' && c != '\r') {
      if (seen_blank) return line_start;
      line_blank = false;
    }
  }
}

int64_t snap_in_file(const InputFile& in, const TextInputOptions& opts, int64_t offset) {
  if (!in.splittable) return offset * 2 < in.bytes ? 0 : in.bytes;
  if (in.format == InputFormat::jsonl) return next_line_start(in.path, offset, in.bytes);
  (void)opts;
  return next_blank_doc_start(in.path, offset, in.bytes);
}

}  // namespace

void TextInputOptions::validate() const {
  if (format != "auto" && format != "text" && format != "jsonl")
    fail_input("--format must be auto, text or jsonl, got '" + format + "'");
  if (text_field.empty()) fail_input("--text-field must not be empty");
}

std::vector<InputFile> describe_inputs(const std::vector<std::string>& paths, const TextInputOptions& opts) {
  opts.validate();
  if (paths.empty()) fail_input("no --input files");
  std::vector<InputFile> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec)) fail_input("input file not found: " + p);
    InputFile in;
    in.path = p;
    in.bytes = static_cast<int64_t>(std::filesystem::file_size(p, ec));
    if (ec) fail_input("cannot stat input " + p + ": " + ec.message());
    std::FILE* f = std::fopen(p.c_str(), "rb");
    if (!f) fail_input("cannot read input " + p + ": " + std::strerror(errno));
    unsigned char magic[2] = {0, 0};
    const size_t got = std::fread(magic, 1, 2, f);
    std::fclose(f);
    in.gzip = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    const std::string stem = ends_with(p, ".gz") ? p.substr(0, p.size() - 3) : p;
    if (opts.format == "jsonl" || (opts.format == "auto" && (ends_with(stem, ".jsonl") || ends_with(stem, ".ndjson"))))
      in.format = InputFormat::jsonl;
    in.splittable = !in.gzip && (in.format == InputFormat::jsonl || opts.blank_line_docs);
    out.push_back(in);
  }
  return out;
}

std::vector<InputPiece> plan_pieces(const std::vector<InputFile>& inputs, const TextInputOptions& opts,
                                    int world_rank, int world_size) {
  if (world_size < 1 || world_rank < 0 || world_rank >= world_size)
    fail_input("plan_pieces: rank " + std::to_string(world_rank) + " of " + std::to_string(world_size));
  std::vector<int64_t> base(inputs.size() + 1, 0);  // global byte offset of each file
  for (size_t f = 0; f < inputs.size(); ++f) base[f + 1] = base[f] + inputs[f].bytes;
  const int64_t total = base.back();
  const auto W = static_cast<int64_t>(world_size);
  auto boundary = [&](int64_t r) -> int64_t {  // the snapped start of rank r's range
    if (r <= 0) return 0;
    if (r >= W) return total;
    const int64_t x = (total / W) * r + (total % W) * r / W;  // floor(total * r / W) without overflow
    for (size_t f = 0; f < inputs.size(); ++f)
      if (inputs[f].bytes > 0 && base[f] <= x && x < base[f + 1])
        return base[f] + snap_in_file(inputs[f], opts, x - base[f]);
    return total;
  };
  const int64_t lo = boundary(world_rank), hi = boundary(world_rank + 1);
  std::vector<InputPiece> pieces;
  for (size_t f = 0; f < inputs.size(); ++f) {
    const int64_t b = std::max(lo, base[f]), e = std::min(hi, base[f + 1]);
    if (b < e) pieces.push_back({static_cast<int64_t>(f), b - base[f], e - base[f]});
  }
  return pieces;
}

// ---- reading ----

class DocumentReader::Source {
 public:
  virtual ~Source() = default;
  virtual size_t read(char* dst, size_t n) = 0;
  virtual int64_t consumed() const = 0;  // input bytes consumed (compressed for gzip)
};

namespace {

class PlainSource final : public DocumentReader::Source {
 public:
  PlainSource(const std::string& path, int64_t begin, int64_t end)
      : f_(std::fopen(path.c_str(), "rb")), path_(path), left_(end - begin) {
    if (!f_ || fseeko(f_, static_cast<off_t>(begin), SEEK_SET) != 0)
      fail_input("cannot read input " + path + ": " + std::strerror(errno));
  }
  ~PlainSource() override { std::fclose(f_); }
  size_t read(char* dst, size_t n) override {
    n = std::min(n, static_cast<size_t>(left_));
    const size_t got = n ? std::fread(dst, 1, n, f_) : 0;
    if (got < n && std::ferror(f_)) fail_runtime("read error in " + path_, __FILE__, __LINE__);
    left_ -= static_cast<int64_t>(got);
    done_ += static_cast<int64_t>(got);
    if (got < n) left_ = 0;  // the file shrank under us: stop here
    return got;
  }
  int64_t consumed() const override { return done_; }

 private:
  std::FILE* f_;
  std::string path_;
  int64_t left_, done_ = 0;
};

class GzipSource final : public DocumentReader::Source {
 public:
  explicit GzipSource(const std::string& path) : gz_(gzopen(path.c_str(), "rb")), path_(path) {
    if (!gz_) fail_input("cannot open gzip input " + path);
    gzbuffer(gz_, 1 << 18);
  }
  ~GzipSource() override { gzclose(gz_); }
  size_t read(char* dst, size_t n) override {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n, 1u << 30));
    const int got = gzread(gz_, dst, chunk);
    if (got < 0) {
      int errnum = 0;
      fail_input(path_ + ": corrupt gzip data (" + gzerror(gz_, &errnum) + ")");
    }
    return static_cast<size_t>(got);
  }
  int64_t consumed() const override { return static_cast<int64_t>(gzoffset(gz_)); }

 private:
  gzFile gz_;
  std::string path_;
};

}  // namespace

DocumentReader::DocumentReader(const std::vector<InputFile>& inputs, std::vector<InputPiece> pieces,
                               TextInputOptions opts)
    : inputs_(inputs), pieces_(std::move(pieces)), opts_(std::move(opts)), counts_(inputs.size()) {
  for (const InputPiece& p : pieces_) bytes_total_ += p.end - p.begin;
}

DocumentReader::~DocumentReader() { delete src_; }

int64_t DocumentReader::bytes_done() const { return bytes_before_ + (src_ ? src_->consumed() : 0); }

bool DocumentReader::open_next_piece() {
  if (src_) {
    bytes_before_ += piece_.end - piece_.begin;
    delete src_;
    src_ = nullptr;
  }
  if (next_piece_ >= pieces_.size()) return false;
  piece_ = pieces_[next_piece_++];
  cur_ = &inputs_[static_cast<size_t>(piece_.file)];
  if (cur_->gzip) src_ = new GzipSource(cur_->path);
  else src_ = new PlainSource(cur_->path, piece_.begin, piece_.end);
  if (buf_.size() < (1u << 20)) buf_.resize(1u << 20);
  pos_ = len_ = 0;
  eof_ = false;
  lines_in_piece_ = 0;
  line_base_ = piece_.begin == 0 ? 0 : -1;
  return true;
}

bool DocumentReader::next_line(std::string_view& line) {
  for (;;) {
    const char* start = buf_.data() + pos_;
    if (const void* nl = std::memchr(start, '\n', len_ - pos_)) {
      const size_t n = static_cast<size_t>(static_cast<const char*>(nl) - start);
      line = std::string_view(start, n);
      pos_ += n + 1;
      ++lines_in_piece_;
      return true;
    }
    if (eof_) {
      if (pos_ == len_) return false;
      line = std::string_view(start, len_ - pos_);  // a last line without '\n'
      pos_ = len_;
      ++lines_in_piece_;
      return true;
    }
    if (pos_ > 0) {
      std::memmove(buf_.data(), start, len_ - pos_);
      len_ -= pos_;
      pos_ = 0;
    }
    if (len_ == buf_.size()) buf_.resize(buf_.size() * 2);  // a line longer than the buffer
    const size_t got = src_->read(buf_.data() + len_, buf_.size() - len_);
    if (got == 0) eof_ = true;
    len_ += got;
  }
}

int64_t DocumentReader::line_number() {
  if (line_base_ < 0) {  // count the lines before a piece that starts mid-file, once, only when an error needs it
    line_base_ = 0;
    Scanner s(cur_->path, 0);
    for (int64_t p = 0; p < piece_.begin; ++p)
      if (s.get() == '\n') ++line_base_;
  }
  return line_base_ + lines_in_piece_;
}

void DocumentReader::invalid(const std::string& why) {
  const std::string where = cur_->path + ":" + std::to_string(line_number()) + ": ";
  if (!opts_.skip_invalid) fail_input(where + why + " (--skip-invalid counts and skips such lines)");
  ++counts_[static_cast<size_t>(piece_.file)].skipped;
  if (examples_.size() < max_examples) examples_.push_back(where + why);
}

bool DocumentReader::next(std::string& text, int64_t& file) {
  for (;;) {
    if (!src_ && !open_next_piece()) return false;
    FileCounts& c = counts_[static_cast<size_t>(piece_.file)];
    std::string_view line;
    if (cur_->format == InputFormat::jsonl) {
      if (!next_line(line)) {
        open_next_piece();
        continue;
      }
      if (lines_in_piece_ == 1 && piece_.begin == 0 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
      if (is_blank(line)) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::parse_error& e) {
        std::string msg = e.what();
        const auto colon = msg.find(": ");  // drop nlohmann's "[json.exception.parse_error.101] " prefix
        invalid("malformed JSON (" + (colon == std::string::npos ? msg : msg.substr(colon + 2)) + ")");
        continue;
      }
      if (!j.is_object()) {
        invalid("not a JSON object");
        continue;
      }
      const auto it = j.find(opts_.text_field);
      if (it == j.end() || !it->is_string()) {
        std::string keys;
        for (const auto& [k, v] : j.items()) keys += (keys.empty() ? "" : ", ") + k;
        invalid(it == j.end() ? "no field '" + opts_.text_field + "' (keys: " + keys + "; choose one with --text-field)"
                              : "field '" + opts_.text_field + "' is not a string");
        continue;
      }
      text = it->get_ref<const std::string&>();
      if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
        ++c.empty;
        continue;
      }
    } else if (opts_.blank_line_docs) {
      text.clear();
      bool have = false;
      while (next_line(line)) {
        if (is_blank(line)) {
          if (have) break;
          continue;
        }
        text.append(line);
        text.push_back('\n');
        have = true;
      }
      if (!have) {
        open_next_piece();
        continue;
      }
    } else {  // the whole file is one document
      const int64_t whole_file = piece_.file;
      text.clear();
      for (;;) {
        const size_t old = text.size();
        text.resize(old + (1u << 20));
        const size_t got = src_->read(text.data() + old, 1u << 20);
        text.resize(old + got);
        if (got == 0) break;
      }
      open_next_piece();
      if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
        ++c.empty;
        continue;
      }
      ++c.documents;
      file = whole_file;
      return true;
    }
    ++c.documents;
    file = piece_.file;
    return true;
  }
}

std::vector<std::string> read_all_documents(const std::vector<InputFile>& inputs, const TextInputOptions& opts) {
  DocumentReader r(inputs, plan_pieces(inputs, opts, 0, 1), opts);
  std::vector<std::string> docs;
  std::string text;
  int64_t file = 0;
  while (r.next(text, file)) docs.push_back(text);
  return docs;
}

}  // namespace polyllama
