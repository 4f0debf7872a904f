// `polyllama serve`: a checkpoint behind an OpenAI-compatible HTTP API (serve/server.hpp). Loads the model as
// `generate` does; with --tp N under mpirun the N ranks hold one model by Megatron shards and rank 0 listens.
#include <mpi.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "polyllama/backend/cpu/cpu_backend.hpp"
#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/model_io.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "polyllama/serve/server.hpp"
#include "verbs.hpp"

namespace polyllama::cli {

namespace {

struct Opts {
  std::string ckpt, tpl, dtype = "f32";
  int tp = 1, threads = 0;
  size_t max_body_mib = 8;
  ServeConfig serve;
};

int run(Opts o) {
  int world_size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (world_size != o.tp)
    fail_input("serve runs one model: launch exactly --tp ranks (mpirun -np " + std::to_string(o.tp) +
               "); for more throughput, run one server per group of ranks behind a load balancer");
  if (o.dtype != "f32" && o.dtype != "f64") fail_input("--dtype " + o.dtype + ": expected f32 or f64");
  o.serve.max_body_bytes = o.max_body_mib << 20;
  o.serve.validate();
  const ParallelDims dims = ParallelDims::from_tp(o.tp, world_size);

  const std::string dir = resolve_step_dir(o.ckpt, "--ckpt"), h5 = dir + "/model.h5";
  const CheckpointMeta meta = read_meta(h5);
  const ModelConfig cfg = ModelConfig::from_hf_json(nlohmann::json::parse(meta.config_json), h5);
  validate_tensor_parallel(cfg, o.tp);
  const ParallelContext par(dims, MPI_COMM_WORLD);
  const Tokenizer tok = Tokenizer::from_bytes(meta.tokenizer_bytes, h5);
  const std::unique_ptr<ChatTemplate> tpl = chat_template_for(o.tpl, meta, h5);  // none: chat requests get 400
  if (o.serve.model_name.empty()) {
    std::string d = o.ckpt;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    o.serve.model_name = d.substr(d.find_last_of('/') == std::string::npos ? 0 : d.find_last_of('/') + 1);
  }

  CpuBackend be(o.threads);
  LlamaModel model(cfg, be, o.dtype == "f64" ? DType::f64 : DType::f32, /*mixed_precision=*/false,
                   o.tp > 1 ? &par : nullptr);
  load_model_weights(h5, model);
  return run_server(o.serve, model, tok, tpl.get(), par);
}

}  // namespace

RunFn add_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve",
      "The model behind an OpenAI-compatible HTTP API: POST /v1/completions and /v1/chat/completions (the "
      "checkpoint's chat template; streaming with \"stream\": true), GET /v1/models and /health. Requests that "
      "arrive while others decode join the running batch (continuous batching); each gets the completion "
      "`generate` gives for its prompt and settings alone. SIGTERM or Ctrl-C finishes the requests in flight, "
      "then exits 0. Examples: "
      "polyllama serve --ckpt runs/sft --port 8000 | "
      "OPENAI_API_KEY=secret polyllama serve --ckpt runs/sft --api-key-env OPENAI_API_KEY --host 0.0.0.0 | "
      "mpirun -np 2 polyllama serve --ckpt runs/big --tp 2 | "
      "curl -s localhost:8000/v1/completions -H 'Content-Type: application/json' "
      "-d '{\"prompt\": \"Once upon a time\", \"max_tokens\": 32, \"temperature\": 0}'");
  add_config_file(cmd);
  auto o = std::make_shared<Opts>();
  ServeConfig& s = o->serve;
  cmd->add_option("--ckpt", o->ckpt, "checkpoint: a run directory (its ckpt/latest) or a step directory")->required();
  cmd->add_option("--host", s.host, "address to listen on (0.0.0.0: every interface)")->capture_default_str();
  cmd->add_option("--port", s.port, "TCP port (0: any free port, printed and written to --port-file)")
      ->capture_default_str();
  cmd->add_option("--port-file", s.port_file, "write the bound port to this file once listening");
  cmd->add_option("--api-key-env", s.api_key_env,
                  "environment variable holding the API key clients must send as 'Authorization: Bearer KEY' "
                  "(unset or empty: no key; the key itself is never printed)");
  cmd->add_option("--model-name", s.model_name, "the model's name in /v1/models and responses (default: --ckpt's "
                                                 "last path component)");
  cmd->add_option("--template", o->tpl, "chat template: a built-in name or a JSON file; overrides the checkpoint's");
  cmd->add_option("--max-batch", s.limits.max_batch, "requests decoding together (more wait in a queue)")
      ->capture_default_str();
  cmd->add_option("--max-context", s.limits.max_context,
                  "prompt + completion positions per request (0: the model's max_position_embeddings); with "
                  "--max-batch it sizes the KV cache")
      ->capture_default_str();
  cmd->add_option("--prefill-chunk", s.limits.prefill_chunk, "prompt tokens per forward pass while prefilling")
      ->capture_default_str();
  cmd->add_option("--max-body", o->max_body_mib, "largest request body in MiB (larger: 413)")->capture_default_str();
  cmd->add_option("--http-threads", s.http_threads, "HTTP handler threads (0: 2 x --max-batch + 4)")
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "compute dtype on the CPU: f32 or f64")->capture_default_str();
  add_threads_option(cmd, o->threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
  cmd->add_option("--tp", o->tp, "tensor-parallel ranks holding the one model (launch exactly this many)")
      ->capture_default_str();
  return [cmd, o]() { return cmd->parsed() ? run(*o) : 0; };
}

}  // namespace polyllama::cli
