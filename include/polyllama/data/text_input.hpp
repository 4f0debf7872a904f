#pragma once
// Raw text inputs for `polyllama data` and `tokenizer stats`: plain text (one document per file, or documents
// separated by blank lines) and JSONL with a text field, either of them gzip-compressed.
//
// Splitting the work across ranks (plain ints, STYLE.md rule 7): the inputs, in the order given, form one byte
// space of sum(file sizes) bytes. Rank r of W owns the nominal range [T*r/W, T*(r+1)/W), with both ends moved
// forward ("snapped") to the next document boundary, so that every document is read by exactly one rank and
// the ranks' documents, concatenated in rank order, are the documents of a serial read in the same order:
//   - JSONL: the next line start;
//   - text with blank-line documents: the first non-blank line after the next blank line;
//   - files that cannot be split (gzip, and text that is one document per file) go whole to the rank whose
//     nominal range holds the first half of the file.
// Snapping reads only a little of the file around each boundary, and each rank snaps only its own two ends.
#include <cstdint>
#include <string>
#include <vector>

namespace polyllama {

enum class InputFormat { text, jsonl };

struct TextInputOptions {
  std::string format = "auto";      // auto (.jsonl / .ndjson, optionally .gz, are JSONL), text, jsonl
  std::string text_field = "text";  // JSONL: the top-level string field holding the document
  bool blank_line_docs = false;     // text: a blank (whitespace-only) line ends a document; else one per file
  bool skip_invalid = false;        // JSONL: count and skip malformed lines or lines without the field
  bool strict_utf8 = false;         // invalid UTF-8 fails (FILE:LINE) instead of being counted
  void validate() const;
};

struct InputFile {
  std::string path;
  InputFormat format = InputFormat::text;
  bool gzip = false;       // detected from the magic bytes, not the name
  int64_t bytes = 0;       // size on disk (compressed for gzip)
  bool splittable = false;
};

// Checks every path exists and is a readable regular file (fail_input naming it: missing, a directory, ...)
// and detects its format. `flag` names the option the paths came from in those messages.
std::vector<InputFile> describe_inputs(const std::vector<std::string>& paths, const TextInputOptions& opts,
                                      const std::string& flag = "--input");

// A byte range [begin, end) of inputs[file], starting and ending at document boundaries.
struct InputPiece {
  int64_t file = 0;
  int64_t begin = 0, end = 0;
};

// The pieces world_rank of world_size reads (see the header comment); empty when it has nothing to do.
std::vector<InputPiece> plan_pieces(const std::vector<InputFile>& inputs, const TextInputOptions& opts,
                                    int world_rank, int world_size);

// Documents of a list of pieces, in order. Whitespace-only documents are counted as empty and not returned.
class DocumentReader {
 public:
  DocumentReader(const std::vector<InputFile>& inputs, std::vector<InputPiece> pieces, TextInputOptions opts);
  ~DocumentReader();
  DocumentReader(const DocumentReader&) = delete;
  DocumentReader& operator=(const DocumentReader&) = delete;

  // The next document's text and the index of its input file; false when every piece is read.
  // Malformed JSONL throws fail_input("FILE:LINE: ...") unless skip_invalid, which counts it instead.
  bool next(std::string& text, int64_t& file);

  // The same documents in parts of about max_bytes, so a document of any length streams through bounded memory
  // (a JSONL record, or a single line of --blank-line-docs text, still comes whole). A document's first part
  // comes only once it is known not to be whitespace-only; its last part may be empty.
  struct Part {
    int64_t file = 0;
    bool first = false, last = false;
  };
  bool next_part(std::string& text, Part& part, size_t max_bytes);

  // Every byte read is checked: a NUL byte (binary input) fails with FILE:LINE and the byte offset; invalid
  // UTF-8 is counted here (or fails under strict_utf8).
  struct Utf8Counts {
    int64_t bytes = 0, lines = 0;  // invalid bytes, and lines holding any
    std::string first;             // "FILE:LINE" of the first
  };
  const Utf8Counts& invalid_utf8() const { return utf8_; }

  struct FileCounts {
    int64_t documents = 0, skipped = 0, empty = 0;
  };
  const std::vector<FileCounts>& counts() const { return counts_; }  // one per input file
  // "FILE:LINE: reason" of the first skipped records (at most max_examples).
  const std::vector<std::string>& skip_examples() const { return examples_; }
  int64_t bytes_total() const { return bytes_total_; }  // bytes of the pieces (compressed for gzip)
  int64_t bytes_done() const;                           // of those, read so far

  static constexpr size_t max_examples = 5;
  class Source;  // a plain byte range or a gzip stream (text_input.cpp)

 private:
  bool open_next_piece();
  bool next_line(std::string_view& line);  // false at the piece's end
  // --blank-line-docs: skips blank lines and appends the first line of the next document to text (false when
  // the piece ends first); then appends its lines while text is under max_bytes (true when the document ended).
  bool start_paragraph(std::string& text);
  bool append_paragraph(std::string& text, size_t max_bytes);
  int64_t line_number();                   // 1-based number of the line last returned (lazy for mid-file starts)
  void invalid(const std::string& why);
  bool next_document(std::string& text, int64_t& file, bool one_piece);  // one_piece: false at the piece's end
  int64_t absolute_line(int64_t line_in_piece);
  // Checks bytes that continue the piece's text (a character may straddle two calls): `offset` is the file
  // offset of data[0] and `line` the 1-based line it is on (0: count the lines of the piece here).
  void check_bytes(const char* data, size_t n, int64_t offset, int64_t line);
  void bad_utf8(int64_t offset, int64_t line, int64_t nbytes);
  size_t read_whole_file_part(std::string& text, size_t max_bytes);

  std::vector<InputFile> inputs_;
  std::vector<InputPiece> pieces_;
  TextInputOptions opts_;
  std::vector<FileCounts> counts_;
  std::vector<std::string> examples_;
  size_t next_piece_ = 0;
  int64_t bytes_total_ = 0, bytes_before_ = 0;  // bytes of the pieces already finished
  // The open piece.
  Source* src_ = nullptr;
  const InputFile* cur_ = nullptr;
  InputPiece piece_;
  std::string buf_;
  size_t pos_ = 0, len_ = 0;
  bool eof_ = false;
  int64_t lines_in_piece_ = 0, line_base_ = -1;  // line_base_: lines before the piece (-1: not counted yet)
  int64_t line_start_ = 0;                        // byte offset of the last line in the piece
  int64_t delivered_ = 0;                         // bytes read from the piece's source so far
  bool in_doc_ = false;                           // next_part: inside a document
  // UTF-8 state across check_bytes calls: continuation bytes still expected, the code point so far, its
  // smallest valid value and the bytes seen; newlines seen in the piece (whole-file documents) and the line of
  // the last invalid byte.
  int utf8_need_ = 0, utf8_have_ = 0;
  uint32_t utf8_cp_ = 0, utf8_min_ = 0;
  int64_t scan_newlines_ = 0, last_bad_line_ = -1;
  Utf8Counts utf8_;
};

// Reads every document of `inputs` in order (a serial read; used by tests and `tokenizer stats`).
std::vector<std::string> read_all_documents(const std::vector<InputFile>& inputs, const TextInputOptions& opts);

}  // namespace polyllama
