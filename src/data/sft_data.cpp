#include "polyllama/data/sft_data.hpp"

#include <zlib.h>

#include <algorithm>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"
#include "polyllama/core/random.hpp"

namespace polyllama {

namespace {

using json = nlohmann::json;

// A whole file, gunzipped when it is gzip (zlib reads plain files unchanged).
std::string read_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail_input(path + ": cannot open");
  std::string out;
  char buf[1 << 16];
  int got;
  while ((got = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(got));
  const bool bad = got < 0;
  gzclose(f);
  if (bad) fail_input(path + ": read error (corrupt gzip?)");
  return out;
}

// Records are validated by these and reported as std::string reasons, which the reader places at FILE:LINE.
struct Invalid {
  std::string why;
};

std::string text_field(const json& j, const char* key, bool required) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) throw Invalid{std::string("missing field \"") + key + "\""};
    return "";
  }
  if (!it->is_string()) throw Invalid{std::string("field \"") + key + "\" is not a string"};
  return it->get<std::string>();
}

Role role_of(const std::string& who) {
  static const std::map<std::string, Role> roles = {
      {"system", Role::system},       {"human", Role::user},          {"user", Role::user},
      {"gpt", Role::assistant},       {"assistant", Role::assistant}, {"chatgpt", Role::assistant},
      {"bard", Role::assistant},      {"bing", Role::assistant},      {"model", Role::assistant}};
  const auto it = roles.find(who);
  if (it == roles.end())
    throw Invalid{"unknown speaker \"" + who + "\" (system, human/user, gpt/assistant)"};
  return it->second;
}

// {"conversations": [{from, value}]} or {"messages": [{role, content}]}.
Conversation from_turns(const json& turns, const char* list, const char* who_key, const char* text_key) {
  if (!turns.is_array()) throw Invalid{std::string("\"") + list + "\" is not an array"};
  Conversation c;
  for (size_t i = 0; i < turns.size(); ++i) {
    const json& t = turns[i];
    if (!t.is_object()) throw Invalid{std::string(list) + "[" + std::to_string(i) + "] is not an object"};
    Role r;
    std::string text;
    try {
      r = role_of(text_field(t, who_key, true));
      text = text_field(t, text_key, true);
    } catch (const Invalid& e) {
      throw Invalid{std::string(list) + "[" + std::to_string(i) + "]: " + e.why};
    }
    if (r == Role::system) {
      if (!c.turns.empty()) throw Invalid{std::string(list) + "[" + std::to_string(i) + "]: system after a turn"};
      c.system = text;
    } else {
      c.turns.push_back({r, std::move(text)});
    }
  }
  return c;
}

Conversation from_record(const json& j, const ChatTemplate& tpl, bool need_final_answer = true) {
  if (!j.is_object()) throw Invalid{"a record is a JSON object"};
  Conversation c;
  if (j.contains("conversations")) {
    c = from_turns(j["conversations"], "conversations", "from", "value");
  } else if (j.contains("messages")) {
    c = from_turns(j["messages"], "messages", "role", "content");
  } else if (j.contains("instruction") || j.contains("output")) {
    const std::string instruction = text_field(j, "instruction", true);
    const std::string input = text_field(j, "input", false);
    c.system = text_field(j, "system", false);
    c.turns.push_back({Role::user, tpl.user_text(instruction, input)});
    const std::string output = text_field(j, "output", need_final_answer);
    if (need_final_answer || j.contains("output")) c.turns.push_back({Role::assistant, output});
  } else {
    throw Invalid{"neither instruction/output, conversations nor messages"};
  }
  const std::string p = c.problem(need_final_answer);
  if (!p.empty()) throw Invalid{p};
  return c;
}

}  // namespace

std::string conversation_from_record(const nlohmann::json& record, const ChatTemplate& tpl, bool need_final_answer,
                                     Conversation* out) {
  try {
    *out = from_record(record, tpl, need_final_answer);
  } catch (const Invalid& e) {
    return e.why;
  }
  return "";
}

void read_sft_file(const std::string& path, const ChatTemplate& tpl, bool skip_invalid, SftRecords& out) {
  read_sft_text(read_file(path), path, tpl, skip_invalid, out);
}

void read_sft_text(const std::string& data, const std::string& path, const ChatTemplate& tpl, bool skip_invalid,
                   SftRecords& out) {
  auto bad = [&](const std::string& where, const std::string& why) {
    if (!skip_invalid) fail_input(where + ": " + why + " (--skip-invalid counts and skips such records)");
    if (out.skip_examples.size() < 5) out.skip_examples.push_back(where + ": " + why);
    out.skipped += 1;
  };
  const size_t first = data.find_first_not_of(" \t\r\n\xEF\xBB\xBF");
  if (first == std::string::npos) fail_input(path + ": no records");
  if (data[first] == '[') {  // one JSON array (Alpaca's files)
    json arr;
    try {
      arr = json::parse(data);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double (1e400)
      fail_input(path + ": not valid JSON: " + e.what());
    }
    for (size_t i = 0; i < arr.size(); ++i) {
      try {
        out.conversations.push_back(from_record(arr[i], tpl));
      } catch (const Invalid& e) {
        bad(path + ": record " + std::to_string(i + 1), e.why);
      }
    }
    return;
  }
  int64_t line_no = 0;
  for (size_t pos = 0; pos < data.size();) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    const std::string_view line(data.data() + pos, end - pos);
    pos = end + 1;
    line_no += 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double (1e400)
      bad(where, std::string("not valid JSON (") + e.what() + ")");
      continue;
    }
    try {
      out.conversations.push_back(from_record(j, tpl));
    } catch (const Invalid& e) {
      bad(where, e.why);
    }
  }
}

Truncation parse_truncation(const std::string& s) {
  if (s == "cut") return Truncation::cut;
  if (s == "drop") return Truncation::drop;
  fail_input("--truncation '" + s + "': expected cut or drop");
}

namespace {

SftExample encode_segments(const std::vector<Segment>& segs, const EncodeFn& encode, int32_t bos, int32_t eos) {
  SftExample ex;
  std::vector<int32_t> ids;
  for (const Segment& s : segs) {
    const uint8_t tr = s.train ? 1 : 0;
    if (s.bos) ex.ids.push_back(bos), ex.train.push_back(0);  // BOS is never a label
    ids.clear();
    if (!s.text.empty()) encode(s.text, ids);
    ex.ids.insert(ex.ids.end(), ids.begin(), ids.end());
    ex.train.insert(ex.train.end(), ids.size(), tr);
    if (s.eos) ex.ids.push_back(eos), ex.train.push_back(tr);  // the answer's EOS is learned: it ends answers
  }
  return ex;
}

}  // namespace

std::vector<SftExample> tokenize_conversations(const std::vector<Conversation>& convs, const ChatTemplate& tpl,
                                               const EncodeFn& encode, const SftTokenizeOptions& opts,
                                               SftTokenStats* stats) {
  PL_CHECK(opts.max_tokens >= 2, "SFT examples need room for at least two tokens");
  const auto n = static_cast<int64_t>(convs.size());
  std::vector<SftExample> all(convs.size());
  const int threads = std::max(1, std::min<int>(opts.threads, static_cast<int>(std::max<int64_t>(1, n / 64))));
  std::vector<std::thread> pool;
  for (int w = 0; w < threads; ++w)
    pool.emplace_back([&, w] {
      for (int64_t i = w; i < n; i += threads)
        all[static_cast<size_t>(i)] =
            encode_segments(tpl.render(convs[static_cast<size_t>(i)]), encode, opts.bos_id, opts.eos_id);
    });
  for (std::thread& t : pool) t.join();

  SftTokenStats st;
  std::vector<SftExample> kept;
  kept.reserve(all.size());
  for (SftExample& ex : all) {
    if (static_cast<int64_t>(ex.ids.size()) > opts.max_tokens) {
      if (opts.truncation == Truncation::drop) {
        st.dropped += 1;
        continue;
      }
      ex.ids.resize(static_cast<size_t>(opts.max_tokens));
      ex.train.resize(ex.ids.size());
      st.truncated += 1;
    }
    // Labels are ids[1..]: the first token is never predicted, so it does not count.
    const auto trained = std::count(ex.train.begin() + 1, ex.train.end(), uint8_t{1});
    if (trained == 0) {
      st.dropped += 1;
      continue;
    }
    st.examples += 1;
    st.tokens += static_cast<int64_t>(ex.ids.size());
    st.trained_tokens += trained;
    kept.push_back(std::move(ex));
  }
  if (stats) *stats = st;
  return kept;
}

std::vector<int32_t> encode_prompt(const Conversation& c, const ChatTemplate& tpl, const EncodeFn& encode,
                                   int32_t bos_id, int32_t eos_id) {
  PL_CHECK(!c.turns.empty() && c.turns.back().role == Role::user, "a prompt ends with a user turn");
  return encode_segments(tpl.render(c), encode, bos_id, eos_id).ids;
}

std::vector<size_t> sft_subset(size_t n, size_t keep, uint64_t seed) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  if (keep >= n) return idx;
  // Stream 0x5F7 ("sft") keeps these keys apart from every other draw under the same seed.
  const auto key = [seed](size_t i) { return random_bits(seed, 0x5F7, i); };
  std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(keep), idx.end(),
                   [&](size_t a, size_t b) { return key(a) != key(b) ? key(a) < key(b) : a < b; });
  idx.resize(keep);
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace polyllama
