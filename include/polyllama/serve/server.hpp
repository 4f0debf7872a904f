#pragma once
// `polyllama serve`: an OpenAI-compatible HTTP server over the continuous batcher.
//
// Threads: cpp-httplib's pool runs the handlers, which parse a request, hand it to the decode loop through an
// inbox and wait on the request's own channel for text; the calling (main) thread runs the decode loop, the only
// thread that touches the model, the backend and MPI. Under mpirun with --tp N (one model over N ranks), world
// rank 0 serves; before every step it broadcasts what arrived and what was cancelled, so every rank of the group
// feeds its batcher the same submissions in the same order and all decode in step.
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions (streamed as server-sent events with "stream": true),
// GET /v1/models, GET /health. With an API key set, /v1/* need "Authorization: Bearer KEY" (401 otherwise).
// SIGTERM or SIGINT: new requests get 503, the requests in flight finish, then the server exits 0.
#include <cstddef>
#include <cstdint>
#include <string>

#include "polyllama/data/chat_template.hpp"
#include "polyllama/eval/continuous_batcher.hpp"
#include "polyllama/model/llama.hpp"
#include "polyllama/tokenizer/tokenizer.hpp"

namespace polyllama {

class ParallelContext;

struct ServeConfig {
  std::string host = "127.0.0.1";
  int port = 8000;            // 0: any free port (printed, and written to port_file)
  std::string port_file;      // where the bound port is written once listening (job scripts, tests)
  std::string api_key_env;    // the environment variable holding the key; empty or unset: no key
  std::string model_name;     // what /v1/models lists and responses name
  size_t max_body_bytes = 8u << 20;
  int http_threads = 0;       // 0: enough for every row plus a queue of as many again
  BatcherLimits limits;
  void validate() const;
};

// Serves until SIGTERM/SIGINT; returns the exit code. Every rank of `par` calls it (dp must be 1).
int run_server(const ServeConfig& cfg, LlamaModel& model, const Tokenizer& tok, const ChatTemplate* tpl,
               const ParallelContext& par);

}  // namespace polyllama
