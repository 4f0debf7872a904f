#include "polyllama/serve/server.hpp"

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "polyllama/core/atomic_file.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/parallel/parallel.hpp"
#include "polyllama/serve/openai_api.hpp"
#include "tp_commands.hpp"

namespace polyllama {

using json = nlohmann::json;

void ServeConfig::validate() const {
  limits.validate();
  if (port < 0 || port > 65535) fail_input("--port " + std::to_string(port) + ": expected 0..65535 (0: any free)");
  if (max_body_bytes < 1024) fail_input("--max-body: expected at least 1024 bytes");
  if (http_threads < 0) fail_input("--http-threads " + std::to_string(http_threads) + ": expected >= 0");
}

namespace {

std::atomic<int> g_stop{0};
extern "C" void on_stop_signal(int) { g_stop.store(1); }

// What the decode loop hands one request's handler: text as it becomes final, then the whole output.
struct Channel {
  std::mutex m;
  std::condition_variable cv;
  std::string text;  // not yet sent
  bool done = false;
  GenOutput out;
};

// Where handlers leave requests for the decode loop.
struct Inbox {
  std::mutex m;
  std::condition_variable cv;
  TpCommands pending;
  std::map<uint64_t, std::shared_ptr<Channel>> channels;
  uint64_t next_key = 1;
  bool draining = false;

  std::shared_ptr<Channel> find(uint64_t key) {
    std::lock_guard<std::mutex> lk(m);
    const auto it = channels.find(key);
    return it == channels.end() ? nullptr : it->second;
  }
  void drop(uint64_t key) {
    std::lock_guard<std::mutex> lk(m);
    channels.erase(key);
  }
};

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// Equal bytes, without an early exit on the first difference (the key is a secret; its length is not).
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = static_cast<unsigned char>(diff | (a[i] ^ b[i]));
  return diff == 0;
}

}  // namespace

int run_server(const ServeConfig& cfg, LlamaModel& model, const Tokenizer& tok, const ChatTemplate* tpl,
               const ParallelContext& par) {
  cfg.validate();
  MPI_Comm comm = par.world_comm();
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(comm, &world_rank);
  MPI_Comm_size(comm, &world_size);
  const bool server = world_rank == 0;
  // Every rank catches the signals; only rank 0 acts on them (the others follow its broadcast), so a SIGTERM that
  // mpirun forwards to all ranks drains instead of killing the group mid-step.
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  ContinuousBatcher batcher(model, tok, cfg.limits);
  const int64_t context = batcher.context();
  std::string key;
  if (!cfg.api_key_env.empty()) {
    const char* k = std::getenv(cfg.api_key_env.c_str());
    if (k && *k) key = k;
  }

  Inbox inbox;
  httplib::Server svr;
  std::thread listener;
  auto stop_listener = [&] {
    if (!listener.joinable()) return;
    svr.stop();
    listener.join();
  };
  struct Guard {
    std::function<void()> f;
    ~Guard() { f(); }
  } guard{stop_listener};

  // The handlers live as long as this function (the server threads run them until stop_listener()).
  auto authorized = [&](const httplib::Request& req, httplib::Response& res) {
    if (key.empty()) return true;
    const std::string got = req.get_header_value("Authorization");
    if (got.rfind("Bearer ", 0) == 0 && same_secret(got.substr(7), key)) return true;
    ApiError e{401, "missing or wrong API key: send \"Authorization: Bearer KEY\"", "authentication_error"};
    send_json(res, 401, e.body());
    return false;
  };
  auto handle = [&](const httplib::Request& req, httplib::Response& res, bool chat) {
    if (!authorized(req, res)) return;
    ApiRequest ar;
    ApiError err;
    if (!parse_api_request(req.body, chat, tok, tpl, context, &ar, &err)) return send_json(res, err.status, err.body());
    auto ch = std::make_shared<Channel>();
    uint64_t k = 0;
    {
      std::lock_guard<std::mutex> lk(inbox.m);
      if (inbox.draining) {
        ApiError e{503, "the server is shutting down", "server_error"};
        return send_json(res, 503, e.body());
      }
      k = inbox.next_key++;
      inbox.channels[k] = ch;
      inbox.pending.submit.emplace_back(k, ar.gen);
    }
    inbox.cv.notify_one();
    ApiResponseInfo info{(chat ? "chatcmpl-" : "cmpl-") + std::to_string(k), cfg.model_name,
                         static_cast<int64_t>(std::time(nullptr)), static_cast<int64_t>(ar.gen.ids.size())};
    if (!ar.stream) {
      std::unique_lock<std::mutex> lk(ch->m);
      ch->cv.wait(lk, [&] { return ch->done; });
      inbox.drop(k);
      return send_json(res, 200, api_response(ar, info, ch->out));
    }
    res.set_header("Cache-Control", "no-cache");
    auto first = std::make_shared<bool>(true);
    auto write_event = [](httplib::DataSink& sink, const std::string& data) {
      const std::string ev = "data: " + data + "\n\n";
      return sink.write(ev.data(), ev.size());
    };
    res.set_chunked_content_provider(
        "text/event-stream",
        [ch, ar, info, first, write_event](size_t, httplib::DataSink& sink) {
          std::string text;
          bool done = false;
          int64_t tokens = 0;
          std::string finish;
          {
            std::unique_lock<std::mutex> lk(ch->m);
            ch->cv.wait(lk, [&] { return !ch->text.empty() || ch->done; });
            text.swap(ch->text);
            done = ch->done;
            tokens = static_cast<int64_t>(ch->out.tokens.size());
            finish = ch->out.finish_reason;
          }
          const auto dump = [](const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); };
          if (!text.empty()) {
            if (!write_event(sink, dump(api_chunk(ar, info, text, "", *first)))) return false;
            *first = false;
          }
          if (done) {
            if (!write_event(sink, dump(api_chunk(ar, info, "", finish, *first)))) return false;
            if (ar.include_usage && !write_event(sink, dump(api_usage_chunk(ar, info, tokens)))) return false;
            const std::string end = "data: [DONE]\n\n";
            sink.write(end.data(), end.size());
            sink.done();
          }
          return true;
        },
        [&inbox, ch, k](bool success) {
          bool done = false;
          {
            std::lock_guard<std::mutex> lk(ch->m);
            done = ch->done;
          }
          if (!success && !done) {  // the client went away: free its row
            std::lock_guard<std::mutex> lk(inbox.m);
            inbox.pending.cancel.push_back(k);
          }
          inbox.cv.notify_one();
          if (success || done) inbox.drop(k);
        });
  };
  if (server) {
    const int threads = cfg.http_threads > 0 ? cfg.http_threads : static_cast<int>(2 * cfg.limits.max_batch + 4);
    svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    svr.set_payload_max_length(cfg.max_body_bytes);
    svr.Post("/v1/completions", [&](const httplib::Request& q, httplib::Response& r) { handle(q, r, false); });
    svr.Post("/v1/chat/completions", [&](const httplib::Request& q, httplib::Response& r) { handle(q, r, true); });
    svr.Get("/v1/models", [&](const httplib::Request& q, httplib::Response& r) {
      if (!authorized(q, r)) return;
      send_json(r, 200,
                {{"object", "list"},
                 {"data", json::array({{{"id", cfg.model_name},
                                        {"object", "model"},
                                        {"created", 0},
                                        {"owned_by", "polyllama"},
                                        {"max_model_len", context}}})}});
    });
    svr.Get("/health", [&](const httplib::Request&, httplib::Response& r) { send_json(r, 200, {{"status", "ok"}}); });

    const int port = cfg.port == 0 ? svr.bind_to_any_port(cfg.host) : (svr.bind_to_port(cfg.host, cfg.port) ? cfg.port : -1);
    if (port < 0)
      fail_input("cannot listen on " + cfg.host + ":" + std::to_string(cfg.port) +
                 " (the port is in use or the address is not this machine's): pick another --port");
    listener = std::thread([&svr] { svr.listen_after_bind(); });
    if (!cfg.port_file.empty()) write_file_atomically(cfg.port_file, std::to_string(port) + "\n");
    log_info("serve: " + cfg.model_name + " on http://" + cfg.host + ":" + std::to_string(port) +
             "/v1 | batch " + std::to_string(cfg.limits.max_batch) + ", context " + std::to_string(context) +
             ", KV cache " + std::to_string(batcher.cache_bytes() >> 20) + " MiB | " +
             (key.empty() ? "no API key" : "API key required") + " | ranks " + std::to_string(world_size));
  }

  // The decode loop. Events run on this thread and reach the handlers through their channels.
  BatcherEvents ev;
  ev.text = [&](uint64_t k, const std::string& text) {
    if (auto ch = inbox.find(k)) {
      {
        std::lock_guard<std::mutex> lk(ch->m);
        ch->text += text;
      }
      ch->cv.notify_all();
    }
  };
  ev.done = [&](uint64_t k, GenOutput&& out) {
    if (server)
      log_info("serve: request " + std::to_string(k) + ": " + std::to_string(out.tokens.size()) + " tokens in " +
               std::to_string(out.seconds).substr(0, 5) + " s (" + out.finish_reason + ")");
    if (auto ch = inbox.find(k)) {
      {
        std::lock_guard<std::mutex> lk(ch->m);
        ch->out = std::move(out);
        ch->done = true;
      }
      ch->cv.notify_all();
    }
  };
  for (;;) {
    TpCommands cmd;
    if (server) {
      std::unique_lock<std::mutex> lk(inbox.m);
      if (batcher.idle() && inbox.pending.empty() && !g_stop.load())
        inbox.cv.wait_for(lk, std::chrono::milliseconds(50));
      if (g_stop.load() && !inbox.draining) {
        inbox.draining = true;
        log_info("serve: stopping: finishing " + std::to_string(batcher.live() + static_cast<int64_t>(batcher.waiting()) +
                                                                static_cast<int64_t>(inbox.pending.submit.size())) +
                 " request(s) in flight, refusing new ones");
      }
      std::swap(cmd, inbox.pending);
      cmd.stop = inbox.draining && batcher.idle() && cmd.submit.empty();
    }
    if (world_size > 1) broadcast_commands(cmd, comm, server);
    for (auto& [k, r] : cmd.submit) batcher.submit(k, std::move(r));
    for (uint64_t k : cmd.cancel) batcher.cancel(k, ev);
    if (cmd.stop) break;
    if (!batcher.idle()) batcher.step(ev);
  }
  stop_listener();
  if (server) {
    const BatcherStats& st = batcher.stats();
    log_info("serve: stopped after " + std::to_string(st.admitted) + " request(s), " +
             std::to_string(st.prompt_tokens) + " prompt + " + std::to_string(st.generated_tokens) +
             " generated tokens");
  }
  return 0;
}

}  // namespace polyllama
