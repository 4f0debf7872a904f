#include "polyllama/serve/openai_api.hpp"

#include <cmath>
#include <type_traits>

#include "polyllama/data/sft_data.hpp"

namespace polyllama {

using json = nlohmann::json;

json ApiError::body() const { return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}}; }

namespace {

// A field's value as T, or an error naming the field and what was expected.
template <typename T>
bool field(const json& j, const char* name, T* out, ApiError* err, const char* expected) {
  if (!j.contains(name) || j[name].is_null()) return true;
  const json& v = j[name];
  bool ok = false;
  if constexpr (std::is_same_v<T, bool>) {
    ok = v.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    ok = v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = v.is_number();
  } else {
    ok = v.is_string();
  }
  if (!ok) {
    err->message = std::string("'") + name + "': expected " + expected + ", got " + v.dump();
    return false;
  }
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
    *out = static_cast<T>(v.is_number_float() ? v.get<double>() : static_cast<double>(v.get<int64_t>()));
  else
    *out = v.get<T>();
  return true;
}

bool fail(ApiError* err, const std::string& message) {
  err->message = message;
  return false;
}

}  // namespace

bool parse_api_request(const std::string& body, bool chat, const Tokenizer& tok, const ChatTemplate* tpl,
                       int64_t context, ApiRequest* out, ApiError* err) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond double (1e400)
    return fail(err, std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return fail(err, "the body must be a JSON object");
  ApiRequest r;
  r.chat = chat;
  LiveRequest& g = r.gen;
  g.sampling.temperature = 1.0;  // OpenAI's default; 0 is greedy
  int64_t n = 1, max_tokens = -1, top_k = 0;
  if (!field(j, "stream", &r.stream, err, "a boolean") || !field(j, "n", &n, err, "an integer") ||
      !field(j, "max_tokens", &max_tokens, err, "an integer") ||
      !field(j, "temperature", &g.sampling.temperature, err, "a number") ||
      !field(j, "top_p", &g.sampling.top_p, err, "a number") || !field(j, "top_k", &top_k, err, "an integer") ||
      !field(j, "repetition_penalty", &g.sampling.repetition_penalty, err, "a number") ||
      !field(j, "seed", &g.sampling.seed, err, "an integer"))
    return false;
  if (chat && !field(j, "max_completion_tokens", &max_tokens, err, "an integer")) return false;
  if (n != 1) return fail(err, "'n': this server returns one choice per request (n = 1)");
  if (j.contains("seed") && j["seed"].is_number_integer() && j["seed"].get<int64_t>() < 0)
    return fail(err, "'seed': expected a non-negative integer");
  for (const char* unsupported : {"logprobs", "echo", "top_logprobs", "best_of"}) {
    if (!j.contains(unsupported)) continue;
    const json& v = j[unsupported];
    const bool off = v.is_null() || (v.is_boolean() && !v.get<bool>()) ||
                     (std::string(unsupported) == "best_of" && v.is_number_integer() && v.get<int64_t>() == 1);
    if (!off) return fail(err, std::string("'") + unsupported + "' is not supported by this server");
  }
  if (g.sampling.temperature < 0 || !std::isfinite(g.sampling.temperature))
    return fail(err, "'temperature': expected a number >= 0");
  if (!(g.sampling.top_p > 0 && g.sampling.top_p <= 1)) return fail(err, "'top_p': expected a number in (0, 1]");
  if (!(g.sampling.repetition_penalty > 0) || !std::isfinite(g.sampling.repetition_penalty))
    return fail(err, "'repetition_penalty': expected a number > 0");
  g.sampling.top_k = top_k > 0 ? top_k : 0;
  if (j.contains("stream_options") && j["stream_options"].is_object()) {
    const json& so = j["stream_options"];
    if (so.contains("include_usage") && so["include_usage"].is_boolean()) r.include_usage = so["include_usage"];
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& s = j["stop"];
    if (s.is_string()) {
      g.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const json& x : s) {
        if (!x.is_string()) return fail(err, "'stop': expected a string or a list of strings");
        g.stop.push_back(x.get<std::string>());
      }
    } else {
      return fail(err, "'stop': expected a string or a list of strings");
    }
    for (const std::string& x : g.stop)
      if (x.empty()) return fail(err, "'stop': an empty stop string would end every completion at once");
  }

  const EncodeFn encode = [&](const std::string& text, std::vector<int32_t>& ids) {
    const std::vector<int32_t> e = tok.encode(text);
    ids.insert(ids.end(), e.begin(), e.end());
  };
  if (chat) {
    if (!tpl)
      return fail(err, "this model has no chat template (it was not instruction-tuned by `polyllama sft`): start "
                       "`polyllama serve` with --template NAME, or use /v1/completions");
    if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
      return fail(err, "'messages': expected a non-empty list of {\"role\", \"content\"}");
    Conversation conv;
    const std::string why = conversation_from_record(json{{"messages", j["messages"]}}, *tpl, false, &conv);
    if (!why.empty()) return fail(err, "'messages': " + why);
    if (conv.turns.empty() || conv.turns.back().role != Role::user)
      return fail(err, "'messages': the conversation must end with a user message");
    g.ids = encode_prompt(conv, *tpl, encode, tok.bos_id(), tok.eos_id());
    g.text_after_prompt = false;  // an answer reads on its own, as `generate --chat` decodes it
  } else {
    if (!j.contains("prompt")) return fail(err, "'prompt': required");
    json p = j["prompt"];
    if (p.is_array() && p.size() == 1 && p[0].is_string()) p = p[0];
    if (p.is_string()) {
      g.ids.push_back(tok.bos_id());  // as `generate` encodes a plain prompt
      encode(p.get<std::string>(), g.ids);
    } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
      for (const json& x : p) {
        if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= tok.vocab_size())
          return fail(err, "'prompt': token ids must be integers in [0, " + std::to_string(tok.vocab_size()) + ")");
        g.ids.push_back(static_cast<int32_t>(x.get<int64_t>()));
      }
    } else {
      return fail(err, "'prompt': expected a string, a list of one string, or a list of token ids");
    }
  }
  const auto nids = static_cast<int64_t>(g.ids.size());
  if (nids >= context)
    return fail(err, "the prompt has " + std::to_string(nids) + " tokens; this server's context is " +
                         std::to_string(context) + " positions (prompt + completion): shorten the prompt");
  if (max_tokens == -1) max_tokens = chat ? context - nids : 16;
  if (max_tokens < 1) return fail(err, "'max_tokens': expected an integer >= 1");
  g.max_new_tokens = std::min(max_tokens, context - nids);
  *out = std::move(r);
  return true;
}

const char* api_finish_reason(const std::string& finish) { return finish == "length" ? "length" : "stop"; }

json api_response(const ApiRequest& req, const ApiResponseInfo& info, const GenOutput& out) {
  json choice = {{"index", 0}, {"finish_reason", api_finish_reason(out.finish_reason)}, {"logprobs", nullptr}};
  if (req.chat)
    choice["message"] = {{"role", "assistant"}, {"content", out.text}};
  else
    choice["text"] = out.text;
  const auto completion = static_cast<int64_t>(out.tokens.size());
  return {{"id", info.id},
          {"object", req.chat ? "chat.completion" : "text_completion"},
          {"created", info.created},
          {"model", info.model},
          {"choices", json::array({choice})},
          {"usage",
           {{"prompt_tokens", info.prompt_tokens},
            {"completion_tokens", completion},
            {"total_tokens", info.prompt_tokens + completion}}}};
}

json api_chunk(const ApiRequest& req, const ApiResponseInfo& info, const std::string& text, const std::string& finish,
               bool first) {
  json choice = {{"index", 0}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish.empty() ? json(nullptr) : json(api_finish_reason(finish));
  if (req.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (finish.empty()) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return {{"id", info.id},
          {"object", req.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", info.created},
          {"model", info.model},
          {"choices", json::array({choice})}};
}

json api_usage_chunk(const ApiRequest& req, const ApiResponseInfo& info, int64_t completion_tokens) {
  return {{"id", info.id},
          {"object", req.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", info.created},
          {"model", info.model},
          {"choices", json::array()},
          {"usage",
           {{"prompt_tokens", info.prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", info.prompt_tokens + completion_tokens}}}};
}

}  // namespace polyllama
