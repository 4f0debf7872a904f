#pragma once
// The OpenAI wire format that `serve` speaks: request bodies of /v1/completions and /v1/chat/completions become
// LiveRequests (eval/continuous_batcher.hpp), and completions become response bodies and server-sent-event
// chunks. Pure functions (no sockets), so every rule is unit-tested.
//
// Accepted: model (any name; echoed back as the served model's), prompt (a string, a one-string list, or a list of
// token ids) or messages, max_tokens (max_completion_tokens for chat), temperature, top_p, top_k (vLLM's; <= 0
// off), repetition_penalty (vLLM's), stop (a string or a list), seed, n (1 only), stream and
// stream_options.include_usage. Unknown fields are ignored; logprobs and echo, which this server does not
// compute, are refused rather than silently dropped. Defaults are OpenAI's: temperature 1, top_p 1, max_tokens 16
// for completions and the rest of the context for chat.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "polyllama/data/chat_template.hpp"
#include "polyllama/eval/continuous_batcher.hpp"
#include "polyllama/eval/generate.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

struct ApiRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the token counts
  LiveRequest gen;
};

// A request the server refuses: the HTTP status and OpenAI's error body.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  nlohmann::json body() const;
};

// Parses a request body. tpl: the chat template (nullptr: chat requests are refused, naming the fix). context:
// prompt + completion positions per request. Returns false and fills err for bad input.
bool parse_api_request(const std::string& body, bool chat, const Tokenizer& tok, const ChatTemplate* tpl,
                       int64_t context, ApiRequest* out, ApiError* err);

// OpenAI's finish_reason for ours: eos and stop are "stop", length is "length".
const char* api_finish_reason(const std::string& finish);

struct ApiResponseInfo {
  std::string id;     // "cmpl-..." / "chatcmpl-..."
  std::string model;  // the served model's name
  int64_t created = 0;
  int64_t prompt_tokens = 0;
};

// The whole (non-streamed) response body.
nlohmann::json api_response(const ApiRequest& req, const ApiResponseInfo& info, const GenOutput& out);
// One server-sent event's JSON: a text delta (finish empty), or the last choice chunk (finish set, text empty).
// For chat, the first chunk also carries the assistant role.
nlohmann::json api_chunk(const ApiRequest& req, const ApiResponseInfo& info, const std::string& text,
                         const std::string& finish, bool first);
// The usage-only chunk of stream_options.include_usage.
nlohmann::json api_usage_chunk(const ApiRequest& req, const ApiResponseInfo& info, int64_t completion_tokens);

}  // namespace polyllama
