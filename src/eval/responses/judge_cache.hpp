#pragma once
// The judge's replies on disk: a JSONL file, one line per reply {"model", "hash", "messages", "reply"}, appended and
// flushed as each reply arrives so that an interrupted run keeps what it paid for. The key is (judge model, the
// exact request messages); the hash only finds candidates, the stored model and messages are compared in full, so a
// collision costs a request, never a wrong reply. Private to the eval area's response judge.
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace polyllama::judge {

class JudgeCache {
 public:
  // Loads `path` when it exists (a truncated last line, from a run killed mid-write, is dropped with a warning;
  // any other bad line fails with exit 1 naming FILE:LINE). "" = no cache: find misses, put does nothing.
  explicit JudgeCache(const std::string& path);
  ~JudgeCache();
  JudgeCache(const JudgeCache&) = delete;
  JudgeCache& operator=(const JudgeCache&) = delete;

  // The cached reply to these messages from this model, or nullptr.
  const std::string* find(const std::string& model, const nlohmann::json& messages) const;
  // Appends and flushes one entry (and remembers it).
  void put(const std::string& model, const nlohmann::json& messages, const std::string& reply);
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  const std::string& path() const { return path_; }

 private:
  struct Entry {
    std::string model, messages, reply;  // messages: as dump_json writes them
  };
  void add(Entry e);
  std::string path_;
  std::vector<Entry> entries_;
  std::unordered_map<uint64_t, std::vector<size_t>> by_hash_;
  std::FILE* out_ = nullptr;
  bool needs_newline_ = false;  // the file ends in a complete line without its '\n'
};

// FNV-1a 64 of model, a NUL, and the messages' dump.
uint64_t cache_hash(const std::string& model, const std::string& messages_dump);

}  // namespace polyllama::judge
