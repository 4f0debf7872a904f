#include "polyllama/tokenizer/fast_bpe.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <optional>
#include <stdexcept>

#include "polyllama/tokenizer/sp_model.hpp"
#include "protobuf_wire.hpp"

namespace polyllama {

namespace {

// SentencePiece's DecodeUTF8 + IsValidDecodeUTF8: the length of the valid character at s[i], 0 when invalid
// (SentencePiece then consumes one byte and writes U+FFFD).
size_t valid_char_len(std::string_view s, size_t i, uint32_t* cp_out) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const size_t len = s.size() - i;
  const auto trail = [&](size_t k) { return (b(k) & 0xC0) == 0x80; };
  const auto valid_cp = [](uint32_t c) { return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF); };
  uint32_t cp = 0;
  if (b(0) < 0x80) {
    *cp_out = b(0);
    return 1;
  }
  if (len >= 2 && (b(0) & 0xE0) == 0xC0) {
    cp = ((b(0) & 0x1Fu) << 6) | (b(1) & 0x3Fu);
    if (trail(1) && cp >= 0x80 && valid_cp(cp)) return *cp_out = cp, 2;
  } else if (len >= 3 && (b(0) & 0xF0) == 0xE0) {
    cp = ((b(0) & 0x0Fu) << 12) | ((b(1) & 0x3Fu) << 6) | (b(2) & 0x3Fu);
    if (trail(1) && trail(2) && cp >= 0x800 && valid_cp(cp)) return *cp_out = cp, 3;
  } else if (len >= 4 && (b(0) & 0xF8) == 0xF0) {
    cp = ((b(0) & 0x07u) << 18) | ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) | (b(3) & 0x3Fu);
    if (trail(1) && trail(2) && trail(3) && cp >= 0x10000 && valid_cp(cp)) return *cp_out = cp, 4;
  }
  return 0;
}

// The code point of the (valid) character at s[i] and its length.
inline size_t char_at(std::string_view s, size_t i, uint32_t* cp) {
  const auto c0 = static_cast<unsigned char>(s[i]);
  if (c0 < 0x80) {
    *cp = c0;
    return 1;
  }
  const size_t n = valid_char_len(s, i, cp);
  return n ? n : 1;
}

inline int small_code(uint32_t cp) { return cp < 0x80 ? static_cast<int>(cp) : cp == 0x2581 ? 0x80 : -1; }
constexpr int kSmall = 0x81;

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's escaped space

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Per-thread state: the chunk cache (chunk -> ids in `arena`) and scratch buffers.
struct ThreadState {
  uint64_t owner = 0;  // FastBpe::instance_ of the model the cache holds ids of
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, SvHash, std::equal_to<>> cache;
  std::vector<int32_t> arena;
  std::string norm;
  struct Sym {
    int prev, next;
    uint32_t begin, len;
  };
  struct Pair {
    float score;
    int left, right;
    uint32_t size;
  };
  std::vector<Sym> syms;
  std::vector<Pair> heap;
};
thread_local ThreadState t_state;
std::atomic<uint64_t> g_instances{0};
constexpr size_t kMaxCacheEntries = size_t{1} << 19;
constexpr size_t kMaxCachedChunk = 48;  // bytes

}  // namespace

std::unique_ptr<FastBpe> FastBpe::create(const std::string& model_bytes, std::string* why) {
  auto fail = [&](const std::string& reason) {
    if (why) *why = reason;
    return std::unique_ptr<FastBpe>();
  };
  std::string reason;
  std::optional<SpModel> sp = SpModel::try_parse(model_bytes, &reason);
  if (!sp) return fail("cannot parse the model: " + reason);
  std::unique_ptr<FastBpe> m(new FastBpe());
  m->instance_ = ++g_instances;
  // The settings this encoder depends on, with the proto's defaults for fields the file leaves out.
  int64_t model_type = 1;
  bool byte_fallback = false, ws_suffix = false, remove_extra = true, escape = true;
  std::string_view charsmap;
  try {
    for (wire::Reader r(sp->message(2)); !r.done();) {  // TrainerSpec
      const wire::Field f = r.next();
      if (f.wire != wire::kVarint) continue;
      if (f.number == 3) model_type = static_cast<int64_t>(f.varint);
      else if (f.number == 24) ws_suffix = f.varint != 0;
      else if (f.number == 35) byte_fallback = f.varint != 0;
    }
    for (wire::Reader r(sp->message(3)); !r.done();) {  // NormalizerSpec
      const wire::Field f = r.next();
      if (f.number == 2 && f.wire == wire::kLengthDelimited) charsmap = f.payload;
      if (f.wire != wire::kVarint) continue;
      if (f.number == 3) m->add_dummy_prefix_ = f.varint != 0;
      else if (f.number == 4) remove_extra = f.varint != 0;
      else if (f.number == 5) escape = f.varint != 0;
    }
  } catch (const std::exception& e) {
    return fail(std::string("cannot parse the model: ") + e.what());
  }
  if (model_type != 2) return fail("not a BPE model (model_type " + std::to_string(model_type) + ")");
  if (!byte_fallback) return fail("byte_fallback is off");
  if (ws_suffix) return fail("treat_whitespace_as_suffix is on");
  if (!charsmap.empty()) return fail("the normalizer is not identity (it has a precompiled charsmap)");
  if (remove_extra) return fail("remove_extra_whitespaces is on");
  if (!escape) return fail("escape_whitespaces is off");
  // All pieces first: the maps below hold views into pieces_, which must not grow after.
  for (SpPiece& p : sp->pieces) {
    m->pieces_.push_back(std::move(p.piece));
    m->scores_.push_back(p.score);
  }
  int unknowns = 0;
  std::unordered_set<std::string_view> unused;
  for (size_t i = 0; i < m->pieces_.size(); ++i) {
    const PieceType t = sp->pieces[i].type;
    const std::string_view piece = m->pieces_[i];
    if (piece.empty()) return fail("empty piece");
    if (t == PieceType::unused) {  // checked below: never formed by a merge, so never part of an encoding
      unused.insert(piece);
      continue;
    }
    if (t != PieceType::normal && t != PieceType::unknown && t != PieceType::control && t != PieceType::byte)
      return fail("piece " + std::to_string(i) + " has type " + std::to_string(static_cast<int>(t)) +
                  " (user-defined)");
    auto& map = t == PieceType::normal ? m->normal_ : m->reserved_;
    if (!map.emplace(piece, static_cast<int32_t>(i)).second) return fail("duplicate piece " + std::string(piece));
    if (t == PieceType::unknown) {
      m->unk_id_ = static_cast<int32_t>(i);
      ++unknowns;
    }
  }
  if (unknowns != 1) return fail("the model needs exactly one unknown piece");
  // SentencePiece merges into unused pieces and then splits them back; this encoder only supports unused
  // pieces no merge can form (the padding `tokenizer extend` adds).
  for (const std::string_view u : unused) {
    const bool formable = bpe_can_form(u, [&](std::string_view x) {
      return m->normal_.count(x) > 0 || m->reserved_.count(x) > 0 || unused.count(x) > 0;
    });
    uint32_t cp = 0;
    if (formable || valid_char_len(u, 0, &cp) == u.size())
      return fail("unused piece '" + std::string(u) + "' could appear in an encoding");
  }
  auto piece_to_id = [&](std::string_view w) -> int32_t {
    if (auto it = m->reserved_.find(w); it != m->reserved_.end()) return it->second;
    if (auto it = m->normal_.find(w); it != m->normal_.end()) return it->second;
    return m->unk_id_;
  };
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    m->byte_ids_[b] = piece_to_id(name);
  }
  // Adjacent code point pairs inside normal pieces: the only places a merge can join.
  m->small_pairs_.assign((kSmall * kSmall + 63) / 64, 0);
  for (const auto& [piece, id] : m->normal_) {
    uint32_t prev = 0;
    for (size_t i = 0; i < piece.size();) {
      uint32_t cp = 0;
      const size_t n = valid_char_len(piece, i, &cp);
      if (n == 0) return fail("piece " + std::to_string(id) + " is not valid UTF-8");
      if (i > 0) {
        const int a = small_code(prev), b = small_code(cp);
        if (a >= 0 && b >= 0) {
          const auto bit = static_cast<size_t>(a * kSmall + b);
          m->small_pairs_[bit / 64] |= uint64_t{1} << (bit % 64);
        } else {
          m->pairs_.insert((static_cast<uint64_t>(prev) << 32) | cp);
        }
      }
      prev = cp;
      i += n;
    }
  }
  return m;
}

bool FastBpe::may_join(uint32_t a, uint32_t b) const {
  const int sa = small_code(a), sb = small_code(b);
  if (sa >= 0 && sb >= 0) {
    const auto bit = static_cast<size_t>(sa * kSmall + sb);
    return (small_pairs_[bit / 64] >> (bit % 64)) & 1;
  }
  return pairs_.count((static_cast<uint64_t>(a) << 32) | b) != 0;
}

void FastBpe::encode(std::string_view text, std::vector<int32_t>& ids) const {
  ids.clear();
  if (text.empty()) return;
  ThreadState& ts = t_state;
  if (ts.owner != instance_) {
    ts.owner = instance_;
    ts.cache.clear();
    ts.arena.clear();
  }
  // Normalise as SentencePiece's identity normaliser does: dummy prefix, ' ' -> U+2581, each malformed byte ->
  // U+FFFD.
  std::string& norm = ts.norm;
  norm.clear();
  if (add_dummy_prefix_) norm.append(kSpace);
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c == ' ') norm.append(kSpace);
      else norm.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const size_t n = valid_char_len(text, i, &cp);
    if (n == 0) {
      norm.append("\xEF\xBF\xBD");
      ++i;
    } else {
      norm.append(text.substr(i, n));
      i += n;
    }
  }
  // Cut where no piece can join the neighbours and encode the chunks independently.
  const std::string_view s = norm;
  size_t start = 0;
  uint32_t prev = 0;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t n = char_at(s, i, &cp);
    if (i > 0 && !may_join(prev, cp)) {
      encode_chunk(s.substr(start, i - start), ids);
      start = i;
    }
    prev = cp;
    i += n;
  }
  encode_chunk(s.substr(start), ids);
}

void FastBpe::encode_chunk(std::string_view chunk, std::vector<int32_t>& ids) const {
  ThreadState& ts = t_state;
  const bool cacheable = chunk.size() <= kMaxCachedChunk;
  if (cacheable) {
    const auto it = ts.cache.find(chunk);
    if (it != ts.cache.end()) {
      const auto [off, len] = it->second;
      ids.insert(ids.end(), ts.arena.begin() + off, ts.arena.begin() + off + len);
      return;
    }
  }
  const size_t first = ids.size();
  // SentencePiece's BPE (bpe_model.cc): characters as symbols; repeatedly merge the adjacent pair whose
  // concatenation is a piece with the highest score, leftmost first; stale queue entries are skipped.
  auto& syms = ts.syms;
  auto& heap = ts.heap;
  syms.clear();
  heap.clear();
  for (size_t i = 0; i < chunk.size();) {
    uint32_t cp = 0;
    const size_t n = std::min(char_at(chunk, i, &cp), chunk.size() - i);
    const int idx = static_cast<int>(syms.size());
    syms.push_back({idx - 1, i + n < chunk.size() ? idx + 1 : -1, static_cast<uint32_t>(i), static_cast<uint32_t>(n)});
    i += n;
  }
  const auto less = [](const ThreadState::Pair& a, const ThreadState::Pair& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  auto add_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const auto& l = syms[static_cast<size_t>(left)];
    const auto& r = syms[static_cast<size_t>(right)];
    const std::string_view piece = chunk.substr(l.begin, l.len + r.len);
    const auto it = normal_.find(piece);
    if (it == normal_.end()) return;
    heap.push_back({scores_[static_cast<size_t>(it->second)], left, right, l.len + r.len});
    std::push_heap(heap.begin(), heap.end(), less);
  };
  for (size_t i = 1; i < syms.size(); ++i) add_pair(static_cast<int>(i) - 1, static_cast<int>(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), less);
    const ThreadState::Pair top = heap.back();
    heap.pop_back();
    auto& l = syms[static_cast<size_t>(top.left)];
    auto& r = syms[static_cast<size_t>(top.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != top.size) continue;
    l.len += r.len;
    l.next = r.next;
    if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = top.left;
    r.len = 0;
    add_pair(l.prev, top.left);
    add_pair(top.left, l.next);
  }
  for (int i = syms.empty() ? -1 : 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const auto& sym = syms[static_cast<size_t>(i)];
    const std::string_view w = chunk.substr(sym.begin, sym.len);
    int32_t id = unk_id_;
    if (auto it = reserved_.find(w); it != reserved_.end()) id = it->second;
    else if (auto it2 = normal_.find(w); it2 != normal_.end()) id = it2->second;
    if (id == unk_id_) {
      for (const char c : w) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    } else {
      ids.push_back(id);
    }
  }
  if (cacheable) {
    if (ts.cache.size() >= kMaxCacheEntries) {
      ts.cache.clear();
      ts.arena.clear();
    }
    const auto off = static_cast<uint32_t>(ts.arena.size()), len = static_cast<uint32_t>(ids.size() - first);
    ts.arena.insert(ts.arena.end(), ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end());
    ts.cache.emplace(std::string(chunk), std::make_pair(off, len));
  }
}

}  // namespace polyllama
