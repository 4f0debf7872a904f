#include "judge_cache.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "rubric.hpp"

namespace polyllama::judge {

namespace fs = std::filesystem;

uint64_t cache_hash(const std::string& model, const std::string& messages_dump) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const std::string& s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  };
  mix(model);
  mix(std::string(1, '\0'));
  mix(messages_dump);
  return h;
}

namespace {

std::string hex(uint64_t h) { return fmt("%016llx", static_cast<unsigned long long>(h)); }

}  // namespace

JudgeCache::JudgeCache(const std::string& path) : path_(path) {
  if (path_.empty()) return;
  std::error_code ec;
  if (fs::exists(path_, ec)) {
    std::ifstream f(path_, std::ios::binary);
    if (!f) fail_input("judge cache " + path_ + ": cannot be read (" + std::strerror(errno) + ")");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    size_t pos = 0;
    for (int64_t line_no = 1; pos < text.size(); ++line_no) {
      const size_t nl = text.find('\n', pos);
      const bool complete = nl != std::string::npos;
      const std::string line = text.substr(pos, complete ? nl - pos : std::string::npos);
      const size_t line_start = pos;
      pos = complete ? nl + 1 : text.size();
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      const bool valid = j.is_object() && j.contains("model") && j["model"].is_string() && j.contains("messages") &&
                         j["messages"].is_array() && j.contains("reply") && j["reply"].is_string();
      if (!valid && !complete) {
        // A run killed mid-write: drop the partial line so the next append starts a clean one.
        log_warn(fmt("judge cache %s:%lld: a truncated last line (%zu bytes) was dropped", path_.c_str(),
                     static_cast<long long>(line_no), line.size()));
        fs::resize_file(path_, line_start, ec);
        if (ec) fail_input("judge cache " + path_ + ": cannot drop its truncated last line (" + ec.message() + ")");
        break;
      }
      if (!valid)
        fail_input(
            fmt("judge cache %s:%lld: not a judge cache entry ({\"model\", \"messages\", \"reply\"}); give "
                "another --judge-cache or remove the file",
                path_.c_str(), static_cast<long long>(line_no)));
      needs_newline_ = !complete;
      add({j["model"].get<std::string>(), dump_json(j["messages"]), j["reply"].get<std::string>()});
    }
  } else if (fs::path(path_).has_parent_path()) {
    fs::create_directories(fs::path(path_).parent_path(), ec);
  }
  out_ = std::fopen(path_.c_str(), "ab");
  if (!out_)
    fail_input("judge cache " + path_ + ": cannot be opened for appending (" + std::strerror(errno) +
               "); check the directory exists and is writable");
}

JudgeCache::~JudgeCache() {
  if (out_) std::fclose(out_);
}

void JudgeCache::add(Entry e) {
  const uint64_t h = cache_hash(e.model, e.messages);
  for (size_t i : by_hash_[h])
    if (entries_[i].model == e.model && entries_[i].messages == e.messages) return;  // the first reply stays
  by_hash_[h].push_back(entries_.size());
  entries_.push_back(std::move(e));
}

const std::string* JudgeCache::find(const std::string& model, const nlohmann::json& messages) const {
  if (path_.empty()) return nullptr;
  const std::string dump = dump_json(messages);
  const auto it = by_hash_.find(cache_hash(model, dump));
  if (it == by_hash_.end()) return nullptr;
  for (size_t i : it->second)
    if (entries_[i].model == model && entries_[i].messages == dump) return &entries_[i].reply;
  return nullptr;
}

void JudgeCache::put(const std::string& model, const nlohmann::json& messages, const std::string& reply) {
  if (path_.empty()) return;
  Entry e{model, dump_json(messages), reply};
  const nlohmann::json line = {
      {"model", model}, {"hash", hex(cache_hash(e.model, e.messages))}, {"messages", messages}, {"reply", reply}};
  std::string text = needs_newline_ ? "\n" : "";
  text += dump_json(line);
  text += '\n';
  // One write per line, flushed at once: a killed run leaves at most its last line partial.
  if (std::fwrite(text.data(), 1, text.size(), out_) != text.size() || std::fflush(out_) != 0)
    fail_runtime("judge cache " + path_ + ": write failed (" + std::strerror(errno) + ")", __FILE__, __LINE__);
  needs_newline_ = false;
  add(std::move(e));
}

}  // namespace polyllama::judge
