#include "polyllama/eval/perplexity.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/data/shards.hpp"
#include "polyllama/eval/runner.hpp"

namespace fs = std::filesystem;

namespace polyllama {

PplSource parse_ppl_source(const std::string& spec) {
  const auto colon = spec.find(':');
  PplSource s;
  if (colon == std::string::npos) {
    s.path = spec;
    s.label = fs::path(spec).filename().string();
  } else {
    s.label = spec.substr(0, colon);
    s.path = spec.substr(colon + 1);
  }
  if (s.label.empty() || s.path.empty())
    fail_input("--ppl-files " + spec + ": expected LABEL:PATH (e.g. zh:heldout_zh.txt) or a path");
  return s;
}

void PplConfig::validate(const ModelConfig& m) const {
  if (seq < 2 || seq > m.max_position_embeddings)
    fail_input("--ppl-seq " + std::to_string(seq) + ": expected 2 .. max_position_embeddings (" +
               std::to_string(m.max_position_embeddings) + ")");
  if (stride < 1 || stride > seq)
    fail_input("--ppl-stride " + std::to_string(stride) + ": expected 1 .. --ppl-seq (" + std::to_string(seq) + ")");
  if (max_documents < 0) fail_input("--ppl-max-docs must be >= 0");
  input.validate();
}

double PplResult::perplexity() const { return tokens > 0 ? std::exp(nats / static_cast<double>(tokens)) : 0.0; }
double PplResult::bits_per_token() const { return tokens > 0 ? nats / std::log(2.0) / static_cast<double>(tokens) : 0; }
double PplResult::bits_per_char() const { return chars > 0 ? nats / std::log(2.0) / static_cast<double>(chars) : -1; }
double PplResult::bits_per_byte() const { return bytes > 0 ? nats / std::log(2.0) / static_cast<double>(bytes) : -1; }

std::pair<double, int64_t> sequence_nll(LlamaModel& model, const std::vector<int32_t>& ids, int64_t stride) {
  const int64_t T = model.seq(), n = static_cast<int64_t>(ids.size());
  PL_CHECK(model.batch() == 1 && T >= 2, "sequence_nll: allocate the model's activations for (1, seq)");
  std::vector<int32_t> in(static_cast<size_t>(T)), tgt(static_cast<size_t>(T));
  double nats = 0;
  int64_t count = 0, scored = 0;  // targets [1, scored] are done
  for (int64_t s = 0; scored < n - 1; s += stride) {
    const int64_t end = std::min(s + T, n - 1);  // the window predicts targets (s, end]
    for (int64_t t = 0; t < T; ++t) {
      const int64_t p = s + t;  // input position p predicts target p + 1
      in[static_cast<size_t>(t)] = p < n ? ids[static_cast<size_t>(p)] : ids[0];  // padding is never read
      const bool counted = p + 1 <= end && p + 1 > scored;
      tgt[static_cast<size_t>(t)] = counted ? ids[static_cast<size_t>(p + 1)] : LlamaModel::kIgnoreIndex;
      count += counted ? 1 : 0;
    }
    nats += model.forward_backward(in.data(), tgt.data(), 1.0, false);
    scored = end;
  }
  return {nats, count};
}

namespace {

int64_t utf8_chars(const std::string& s) {
  int64_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

struct Doc {
  size_t source;
  std::string text;          // a text document (tokenized by the rank that scores it)
  std::vector<int32_t> ids;  // a dataset's document: BOS and its tokens
  int64_t chars = 0, bytes = 0;
  double cost() const { return static_cast<double>(text.empty() ? ids.size() : text.size()); }
};

// Every document of a source (the same on every rank).
void read_source(const PplSource& src, size_t k, const Tokenizer& tok, const PplConfig& cfg, std::vector<Doc>& out) {
  int64_t taken = 0;
  const auto full = [&]() { return cfg.max_documents > 0 && taken >= cfg.max_documents; };
  if (fs::is_regular_file(fs::path(src.path) / "metadata.json")) {
    const ShardReader r(src.path, tok.checksum());
    for (int64_t d = 0; d < r.documents() && !full(); ++d, ++taken) {
      const uint32_t* t = r.doc_tokens(d);
      Doc doc{k, "", {tok.bos_id()}, 0, 0};
      doc.ids.insert(doc.ids.end(), t, t + r.doc_length(d) - 1);  // its EOS is a separator, not text
      out.push_back(std::move(doc));
    }
    return;
  }
  const std::vector<InputFile> inputs = describe_inputs({src.path}, cfg.input);
  DocumentReader reader(inputs, plan_pieces(inputs, cfg.input, 0, 1), cfg.input);
  std::string text;
  int64_t file = 0;
  while (!full() && reader.next(text, file)) {
    if (text.empty()) continue;  // nothing to predict
    out.push_back({k, text, {}, utf8_chars(text), static_cast<int64_t>(text.size())});
    ++taken;
  }
}

}  // namespace

std::vector<PplResult> evaluate_perplexity(LlamaModel& model, const Tokenizer& tok, const ParallelContext& par,
                                           const std::vector<PplSource>& sources, const PplConfig& cfg) {
  std::vector<Doc> docs;
  for (size_t k = 0; k < sources.size(); ++k) read_source(sources[k], k, tok, cfg, docs);
  std::vector<double> cost;
  for (const Doc& d : docs) cost.push_back(d.cost());  // text bytes: no rank tokenizes what it does not score
  const std::vector<int> group = assign_longest_first(cost, par.dims().dp);
  nlohmann::json mine = nlohmann::json::array();
  const double t0 = now_seconds();
  int64_t done = 0, total = 0, tokens_done = 0;
  for (size_t i = 0; i < docs.size(); ++i) total += group[i] == par.dp_rank() ? 1 : 0;
  double last_log = t0;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (group[i] != par.dp_rank()) continue;
    std::vector<int32_t> ids = docs[i].ids;
    if (!docs[i].text.empty()) {
      ids = tok.encode(docs[i].text);
      ids.insert(ids.begin(), tok.bos_id());
    }
    const auto [nats, count] = sequence_nll(model, ids, cfg.stride);
    mine.push_back({i, nats, count});
    ++done, tokens_done += count;
    const double now = now_seconds();
    if (par.rank() == 0 && (now - last_log > 10 || done == total)) {
      const double rate = static_cast<double>(done) / std::max(1e-9, now - t0);
      log_info(fmt("ppl: rank 0 %lld/%lld documents | %.1f docs/s, %.0f tokens/s | ETA %.0fs",
                   static_cast<long long>(done), static_cast<long long>(total), rate,
                   static_cast<double>(tokens_done) / std::max(1e-9, now - t0),
                   static_cast<double>(total - done) / std::max(1e-9, rate)));
      last_log = now;
    }
  }
  if (par.tp_rank() != 0) mine = nlohmann::json::array();
  const std::vector<std::string> parts = gather_strings(mine.dump(), par.world_comm());
  std::vector<PplResult> out(sources.size());
  for (size_t k = 0; k < sources.size(); ++k) out[k].source = sources[k];
  if (par.rank() != 0) return out;
  // Per document, then summed in document order: the same sums whatever the split.
  std::vector<std::pair<double, int64_t>> per_doc(docs.size(), {0.0, -1});
  for (const std::string& p : parts)
    for (const auto& e : nlohmann::json::parse(p))
      per_doc.at(e.at(0).get<size_t>()) = {e.at(1).get<double>(), e.at(2).get<int64_t>()};
  for (size_t i = 0; i < docs.size(); ++i) {
    PL_CHECK(per_doc[i].second >= 0, "perplexity: document " + std::to_string(i) + " was not scored");
    PplResult& r = out[docs[i].source];
    r.documents += 1;
    r.tokens += per_doc[i].second;
    r.nats += per_doc[i].first;
    r.chars += docs[i].chars;
    r.bytes += docs[i].bytes;
  }
  return out;
}

}  // namespace polyllama
