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

std::vector<InputFile> describe_inputs(const std::vector<std::string>& paths, const TextInputOptions& opts,
                                      const std::string& flag) {
  opts.validate();
  if (paths.empty()) fail_input("no " + flag + " files");
  std::vector<InputFile> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec))
      fail_input(flag + " " + p + ": is a directory, expected a text or JSONL file (name the files inside it)");
    if (!std::filesystem::exists(p, ec)) fail_input("input file not found: " + p + " (" + flag + ")");
    if (!std::filesystem::is_regular_file(p, ec))
      fail_input(flag + " " + p + ": not a regular file (a device, FIFO or socket); expected a text or JSONL file");
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
  // The line buffer: 1 MiB, or a plain piece's whole size where that is less (a longer line still grows it): a
  // corpus of many small files then does not page in and zero 1 MiB per file.
  const int64_t piece_bytes = cur_->gzip ? int64_t{1} << 20 : piece_.end - piece_.begin + 1;
  const size_t want = static_cast<size_t>(std::clamp<int64_t>(piece_bytes, 4096, int64_t{1} << 20));
  if (buf_.size() < want) buf_.resize(want);
  pos_ = len_ = 0;
  eof_ = false;
  lines_in_piece_ = 0;
  delivered_ = 0;
  in_doc_ = false;
  utf8_need_ = utf8_have_ = 0;
  scan_newlines_ = 0;
  last_bad_line_ = -1;
  line_base_ = piece_.begin == 0 ? 0 : -1;
  return true;
}

bool DocumentReader::next_line(std::string_view& line) {
  for (;;) {
    const char* start = buf_.data() + pos_;
    const int64_t offset = piece_.begin + delivered_ - static_cast<int64_t>(len_ - pos_);
    if (const void* nl = std::memchr(start, '\n', len_ - pos_)) {
      const size_t n = static_cast<size_t>(static_cast<const char*>(nl) - start);
      line = std::string_view(start, n);
      pos_ += n + 1;
      ++lines_in_piece_;
      line_start_ = offset;
      check_bytes(line.data(), line.size(), offset, lines_in_piece_);
      return true;
    }
    if (eof_) {
      if (pos_ == len_) return false;
      line = std::string_view(start, len_ - pos_);  // a last line without '\n'
      pos_ = len_;
      ++lines_in_piece_;
      line_start_ = offset;
      check_bytes(line.data(), line.size(), offset, lines_in_piece_);
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
    delivered_ += static_cast<int64_t>(got);
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

bool DocumentReader::next(std::string& text, int64_t& file) { return next_document(text, file, false); }

bool DocumentReader::next_document(std::string& text, int64_t& file, bool one_piece) {
  for (;;) {
    if (!src_ && !open_next_piece()) return false;
    FileCounts& c = counts_[static_cast<size_t>(piece_.file)];
    std::string_view line;
    if (cur_->format == InputFormat::jsonl) {
      if (!next_line(line)) {
        open_next_piece();
        if (one_piece) return false;
        continue;
      }
      if (lines_in_piece_ == 1 && piece_.begin == 0 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
      if (is_blank(line)) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number beyond double (1e400)
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
      if (!start_paragraph(text)) {
        open_next_piece();
        continue;
      }
      append_paragraph(text, std::string::npos);
    } else {  // the whole file is one document
      const int64_t whole_file = piece_.file;
      text.clear();
      while (read_whole_file_part(text, 1u << 20) > 0) {
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

bool DocumentReader::start_paragraph(std::string& text) {
  std::string_view line;
  while (next_line(line))
    if (!is_blank(line)) {
      text.append(line);
      text.push_back('\n');
      return true;
    }
  return false;
}

bool DocumentReader::append_paragraph(std::string& text, size_t max_bytes) {
  std::string_view line;
  while (text.size() < max_bytes) {
    if (!next_line(line) || is_blank(line)) return true;
    text.append(line);
    text.push_back('\n');
  }
  return false;
}

bool DocumentReader::next_part(std::string& text, Part& part, size_t max_bytes) {
  if (max_bytes == 0) max_bytes = 1;
  for (;;) {
    if (!src_ && !open_next_piece()) return false;
    FileCounts& c = counts_[static_cast<size_t>(piece_.file)];
    part.file = piece_.file;
    if (cur_->format == InputFormat::jsonl) {  // a record is parsed whole: one part
      if (!next_document(text, part.file, true)) continue;
      part.first = part.last = true;
      return true;
    }
    if (!opts_.blank_line_docs) {  // the whole file is one document, streamed
      if (in_doc_) {
        text.clear();
        const size_t got = read_whole_file_part(text, max_bytes);
        part.first = false;
        part.last = got == 0;
        if (part.last) {
          in_doc_ = false;
          open_next_piece();
        }
        return true;
      }
      text.clear();  // hold the text until it is known not to be whitespace only
      bool content = false;
      for (;;) {
        const size_t old = text.size();
        if (read_whole_file_part(text, max_bytes) == 0) break;
        if (text.find_first_not_of(" \t\r\n", old) != std::string::npos) {
          content = true;
          break;
        }
      }
      if (!content) {
        ++c.empty;
        open_next_piece();
        continue;
      }
      ++c.documents;
      in_doc_ = true;
      part.first = true;
      part.last = false;
      return true;
    }
    text.clear();  // --blank-line-docs: lines up to a blank line, in parts of whole lines
    part.first = !in_doc_;
    if (!in_doc_) {
      if (!start_paragraph(text)) {
        open_next_piece();
        continue;
      }
      ++c.documents;
      in_doc_ = true;
    }
    part.last = append_paragraph(text, max_bytes);
    if (part.last) in_doc_ = false;
    return true;
  }
}

size_t DocumentReader::read_whole_file_part(std::string& text, size_t max_bytes) {
  // A plain piece has a known end: ask for no more than is left (+1, so that a read at the end returns 0).
  if (!cur_->gzip) max_bytes = std::min(max_bytes, static_cast<size_t>(piece_.end - piece_.begin - delivered_) + 1);
  const size_t old = text.size();
  text.resize(old + max_bytes);
  const size_t got = src_->read(text.data() + old, max_bytes);
  text.resize(old + got);
  check_bytes(text.data() + old, got, piece_.begin + delivered_, 0);
  delivered_ += static_cast<int64_t>(got);
  if (got == 0 && utf8_need_ > 0) {  // the file ends inside a character
    bad_utf8(piece_.begin + delivered_ - utf8_have_, scan_newlines_ + 1, utf8_have_);
    utf8_need_ = utf8_have_ = 0;
  }
  return got;
}

int64_t DocumentReader::absolute_line(int64_t line_in_piece) {
  const int64_t saved = lines_in_piece_;
  lines_in_piece_ = line_in_piece;
  const int64_t line = line_number();  // counts the lines before the piece once, when first needed
  lines_in_piece_ = saved;
  return line;
}

void DocumentReader::check_bytes(const char* data, size_t n, int64_t offset, int64_t line) {
  const bool count_lines = line == 0;  // a whole-file document: lines are counted here
  if (const void* nul = std::memchr(data, 0, n)) {
    const auto at = static_cast<size_t>(static_cast<const char*>(nul) - data);
    const int64_t rel = count_lines ? scan_newlines_ + std::count(data, data + at, '\n') + 1 : line;
    fail_input(cur_->path + ":" + std::to_string(absolute_line(rel)) + ": NUL byte at byte offset " +
               std::to_string(offset + static_cast<int64_t>(at)) + (cur_->gzip ? " (uncompressed)" : "") +
               ": a binary file, not text (polyllama reads UTF-8 text and JSONL)");
  }
  int64_t newlines = count_lines ? scan_newlines_ : line - 1;  // lines before data[i], in the piece
  if (!count_lines) utf8_need_ = utf8_have_ = 0;                // a line is checked on its own
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(data[i]);
    if (utf8_need_ == 0) {
      if (c < 0x80) {
        if (c == '\n' && count_lines) ++newlines;
        continue;
      }
      if ((c & 0xE0) == 0xC0) utf8_need_ = 1, utf8_cp_ = c & 0x1Fu, utf8_min_ = 0x80;
      else if ((c & 0xF0) == 0xE0) utf8_need_ = 2, utf8_cp_ = c & 0x0Fu, utf8_min_ = 0x800;
      else if ((c & 0xF8) == 0xF0) utf8_need_ = 3, utf8_cp_ = c & 0x07u, utf8_min_ = 0x10000;
      else {
        bad_utf8(offset + static_cast<int64_t>(i), newlines + 1, 1);
        continue;
      }
      utf8_have_ = 1;
      continue;
    }
    if ((c & 0xC0) != 0x80) {  // a character cut short: its bytes are invalid, and this byte starts afresh
      bad_utf8(offset + static_cast<int64_t>(i) - utf8_have_, newlines + 1, utf8_have_);
      utf8_need_ = utf8_have_ = 0;
      --i;
      continue;
    }
    utf8_cp_ = (utf8_cp_ << 6) | (c & 0x3Fu);
    ++utf8_have_;
    if (--utf8_need_ == 0 && (utf8_cp_ < utf8_min_ || utf8_cp_ > 0x10FFFF || (utf8_cp_ >= 0xD800 && utf8_cp_ <= 0xDFFF)))
      bad_utf8(offset + static_cast<int64_t>(i) + 1 - utf8_have_, newlines + 1, utf8_have_);
  }
  if (count_lines) {
    scan_newlines_ = newlines;
  } else if (utf8_need_ > 0) {  // the line ends inside a character
    bad_utf8(offset + static_cast<int64_t>(n) - utf8_have_, line, utf8_have_);
    utf8_need_ = utf8_have_ = 0;
  }
}

void DocumentReader::bad_utf8(int64_t offset, int64_t line_in_piece, int64_t nbytes) {
  if (opts_.strict_utf8 || utf8_.first.empty()) {
    const std::string where = cur_->path + ":" + std::to_string(absolute_line(line_in_piece));
    if (opts_.strict_utf8)
      fail_input(where + ": invalid UTF-8 at byte offset " + std::to_string(offset) +
                 (cur_->gzip ? " (uncompressed)" : "") +
                 " (--strict-utf8 refuses it; without it such bytes are counted and encoded as SentencePiece does, "
                 "each as U+FFFD)");
    utf8_.first = where;
  }
  utf8_.bytes += nbytes;
  if (line_in_piece != last_bad_line_) {
    ++utf8_.lines;
    last_bad_line_ = line_in_piece;
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
