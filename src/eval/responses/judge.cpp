#include "polyllama/eval/judge.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_map>

#include "http_client.hpp"
#include "judge_cache.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "rubric.hpp"

namespace polyllama {

void JudgeConfig::validate() const {
  if (url.empty()) fail_input("--judge-url: missing; give the judge's endpoint, e.g. http://127.0.0.1:8000/v1");
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    fail_input("--judge-url " + judge::url_for_log(url) + ": expected an http:// or https:// URL");
  if (model.empty()) fail_input("--judge-model: missing; the model name the endpoint serves (e.g. gpt-4o)");
  for (size_t i = 0; i < key_env.size(); ++i) {
    const char c = key_env[i];
    const bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      fail_input("--judge-key-env '" + key_env + "': expected an environment variable name, like OPENAI_API_KEY");
  }
  if (concurrency < 1 || concurrency > 1024)
    fail_input(fmt("--judge-concurrency %d: expected 1..1024 requests in flight", concurrency));
  if (!(timeout_s > 0) || !std::isfinite(timeout_s))
    fail_input(fmt("--judge-timeout %g: expected > 0 seconds", timeout_s));
  if (max_retries < 0 || max_retries > 100) fail_input(fmt("--judge-retries %d: expected 0..100", max_retries));
  if (!(backoff_base_s >= 0) || !(backoff_max_s >= backoff_base_s) || !std::isfinite(backoff_max_s))
    fail_input(fmt("--judge-backoff %g, --judge-backoff-max %g: expected 0 <= base <= max seconds", backoff_base_s,
                   backoff_max_s));
  if (max_tokens < 1) fail_input(fmt("--judge-max-tokens %lld: expected >= 1", static_cast<long long>(max_tokens)));
  if (!(temperature >= 0 && temperature <= 2)) fail_input(fmt("--judge-temperature %g: expected 0..2", temperature));
  if (!(progress_interval_s > 0))
    fail_input(fmt("judge progress interval %g: expected > 0 seconds", progress_interval_s));
}

std::string judge_messages_json(const JudgeItem& item) { return judge::dump_json(judge::request_messages(item)); }

namespace {

constexpr double kRetryAfterCap = 600;  // a Retry-After beyond this is read as this
constexpr int kLoggedRetries = 10;      // retries logged one by one; later ones only counted in the progress line
constexpr int kLoggedFailures = 10;     // unscored items logged one by one
constexpr size_t kBodyExcerpt = 200;

// Progress goes to stderr, one flushed line each, so that stdout stays the verb's own (--json) output.
void say(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

// The key, which must never be shown: trailing whitespace (a key exported from a file keeps its newline) is
// dropped; control characters would inject headers.
std::string api_key(const std::string& env) {
  const char* v = env.empty() ? nullptr : std::getenv(env.c_str());
  std::string k = v ? v : "";
  while (!k.empty() && (k.back() == '\n' || k.back() == '\r' || k.back() == ' ' || k.back() == '\t')) k.pop_back();
  for (char c : k)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      fail_input("$" + env + " holds control characters; set it to the API key alone");
  return k;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// choices[0].message.content; false when the body is not a chat completion.
bool reply_content(const std::string& body, std::string* content) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return false;
  const nlohmann::json& c = j["choices"][0];
  if (!c.is_object() || !c.contains("message") || !c["message"].is_object()) return false;
  const nlohmann::json& m = c["message"];
  content->clear();
  if (!m.contains("content") || m["content"].is_null()) return true;  // e.g. cut by max_tokens: parsed as empty
  if (m["content"].is_string()) {
    *content = m["content"].get<std::string>();
    return true;
  }
  if (!m["content"].is_array()) return false;
  for (const nlohmann::json& part : m["content"])  // [{"type": "text", "text": ...}] from some gateways
    if (part.is_object() && part.contains("text") && part["text"].is_string())
      *content += part["text"].get<std::string>();
  return true;
}

struct Job {
  size_t item = 0;
  bool repair = false;
  nlohmann::json messages;
  std::string first_problem;  // repair jobs: what the first reply lacked
  int retries = 0;            // of this request so far
};

class JudgeRun {
 public:
  JudgeRun(const JudgeConfig& cfg, const std::vector<JudgeItem>& items, const JudgeProgressFn& on_progress)
      : cfg_(cfg),
        items_(items),
        on_progress_(on_progress),
        cache_(cfg.cache_path),
        endpoint_(judge::chat_completions_url(cfg.url)),
        key_(api_key(cfg.key_env)),
        results_(items.size()),
        t_first_(items.size(), -1.0),
        rng_(std::random_device{}()) {}

  std::vector<JudgeResult> run(JudgeStats* stats) {
    t0_ = now_seconds();
    last_progress_ = t0_;
    const std::string key_note = !key_.empty()          ? "API key from $" + cfg_.key_env
                                 : cfg_.key_env.empty() ? std::string("no API key")
                                                        : "no API key ($" + cfg_.key_env + " unset or empty)";
    const std::string cache_note =
        cfg_.cache_path.empty()
            ? "no cache"
            : "cache " + cfg_.cache_path + fmt(" (%lld replies)", static_cast<long long>(cache_.size()));
    say(fmt("judge: %zu answers -> ", items_.size()) + judge::url_for_log(endpoint_) + " (model " + cfg_.model +
        fmt("), %d in flight; ", cfg_.concurrency) + key_note + "; " + cache_note);
    for (size_t i = 0; i < items_.size(); ++i) submit({i, false, judge::request_messages(items_[i]), "", 0}, 0);
    while (done_ < static_cast<int64_t>(items_.size())) {
      double now = now_seconds();
      while (http_.in_flight() < cfg_.concurrency && !queue_.empty() && queue_.begin()->first <= now) {
        Job job = std::move(queue_.begin()->second);
        queue_.erase(queue_.begin());
        send(std::move(job), now);
      }
      double wait = std::max(0.0, last_progress_ + cfg_.progress_interval_s - now);
      if (!queue_.empty() && http_.in_flight() < cfg_.concurrency) wait = std::min(wait, queue_.begin()->first - now);
      for (auto& [tag, resp] : http_.poll(std::clamp(wait, 0.0, 1.0))) {
        auto it = in_flight_.find(tag);
        Job job = std::move(it->second);
        in_flight_.erase(it);
        on_response(std::move(job), resp);
      }
      now = now_seconds();
      if (now - last_progress_ >= cfg_.progress_interval_s && done_ < static_cast<int64_t>(items_.size())) {
        say(progress_line(progress()));
        last_progress_ = now;
      }
    }
    const double secs = now_seconds() - t0_;
    say(
        fmt("judge: %zu answers in %.1fs: %lld scored, %lld unscored; %lld from the cache; %lld requests (%lld "
            "retries, %lld repairs)",
            items_.size(), secs, static_cast<long long>(scored_), static_cast<long long>(done_ - scored_),
            static_cast<long long>(from_cache_), static_cast<long long>(requests_), static_cast<long long>(retries_),
            static_cast<long long>(repairs_)));
    if (stats)
      *stats = {static_cast<int64_t>(items_.size()),
                scored_,
                done_ - scored_,
                from_cache_,
                requests_,
                retries_,
                repairs_,
                secs};
    return std::move(results_);
  }

 private:
  // A fresh request is answered from the cache when it can be; retries go straight to the queue.
  void submit(Job job, double not_before) {
    if (job.retries == 0) {
      if (const std::string* hit = cache_.find(cfg_.model, job.messages)) {
        on_reply(std::move(job), *hit);
        return;
      }
    }
    queue_.emplace(not_before, std::move(job));
  }

  void send(Job job, double now) {
    const nlohmann::json body = {{"model", cfg_.model},
                                 {"messages", job.messages},
                                 {"temperature", cfg_.temperature},
                                 {"max_tokens", cfg_.max_tokens}};
    judge::HttpRequest req{endpoint_, judge::dump_json(body), {}, cfg_.timeout_s};
    if (!key_.empty()) req.headers.push_back("Authorization: Bearer " + key_);
    const uint64_t tag = next_tag_++;
    http_.start(tag, req);
    if (t_first_[job.item] < 0) t_first_[job.item] = now;
    ++results_[job.item].http_requests;
    ++requests_;
    in_flight_.emplace(tag, std::move(job));
  }

  void on_response(Job job, const judge::HttpResponse& r) {
    if (r.curl_code != 0) {
      const std::string what = r.timed_out ? fmt("no reply within %gs (--judge-timeout)", cfg_.timeout_s)
                                           : "connection failed: " + r.curl_error;
      if (r.transient)
        retry_or_fail(std::move(job), r, what);
      else
        fail(job.item, what);
      return;
    }
    if (r.status >= 200 && r.status < 300) {
      std::string content;
      if (!reply_content(r.body, &content)) {
        fail(job.item, fmt("HTTP %ld but not a chat completion (no choices[0].message): ", r.status) + excerpt(r.body));
        return;
      }
      cache_.put(cfg_.model, job.messages, content);  // paid for: kept even if the run dies next
      on_reply(std::move(job), content);
      return;
    }
    const std::string what = fmt("HTTP %ld: ", r.status) + excerpt(r.body);
    if (r.status == 429 || r.status == 408 || (r.status >= 500 && r.status < 600)) {
      retry_or_fail(std::move(job), r, what);
      return;
    }
    std::string hint;
    if (r.status == 401 || r.status == 403)
      hint = key_.empty() ? " (the endpoint wants an API key: set $" + cfg_.key_env + ")"
                          : " (check the API key in $" + cfg_.key_env + ")";
    else if (r.status == 404)
      hint = " (POSTed to " + judge::url_for_log(endpoint_) + "; check --judge-url and --judge-model)";
    fail(job.item, what + hint);
  }

  void retry_or_fail(Job job, const judge::HttpResponse& r, const std::string& what) {
    if (job.retries >= cfg_.max_retries) {
      fail(job.item, what + fmt(" (gave up after %d requests)", job.retries + 1));
      return;
    }
    ++job.retries;
    ++retries_;
    // Full jitter: uniform over [0, the capped exponential], so clients that failed together spread out.
    const double cap = std::min(cfg_.backoff_max_s, cfg_.backoff_base_s * std::ldexp(1.0, job.retries - 1));
    double delay = std::uniform_real_distribution<double>(0.0, cap)(rng_);
    const double ra = judge::retry_after_seconds(r.retry_after, static_cast<double>(std::time(nullptr)));
    if (ra >= 0) delay = std::min(ra, kRetryAfterCap);
    if (retries_ <= kLoggedRetries)
      log_warn(fmt("judge: %s: ", items_[job.item].id.c_str()) + what +
               fmt("; retry %d/%d in %.1fs", job.retries, cfg_.max_retries, delay) +
               (retries_ == kLoggedRetries ? " (further retries are only counted)" : ""));
    submit(std::move(job), now_seconds() + delay);
  }

  void on_reply(Job job, const std::string& reply) {
    JudgeResult& res = results_[job.item];
    res.reply = reply;
    judge::ParsedScores p = judge::parse_scores(reply);
    if (p.ok) {
      res.scored = true;
      res.scores = p.scores;
      res.reason = p.reason;
      res.repaired = job.repair;
      finish(job.item);
    } else if (!job.repair) {
      ++repairs_;
      nlohmann::json m = judge::repair_messages(job.messages, reply, p.problem);
      submit({job.item, true, std::move(m), p.problem, 0}, 0);
    } else {
      fail(job.item,
           "no valid scores in the reply (" + job.first_problem + ") nor after the repair request (" + p.problem + ")");
    }
  }

  void fail(size_t item, const std::string& why) {
    JudgeResult& res = results_[item];
    res.scored = false;
    res.scores.fill(-1);
    res.error = replace_all(why, key_, "[API key]");  // a server may echo the key in an error body
    if (++failures_ <= kLoggedFailures)
      log_warn("judge: " + items_[item].id + ": unscored: " + res.error +
               (failures_ == kLoggedFailures ? " (further unscored answers are only counted)" : ""));
    finish(item);
  }

  void finish(size_t item) {
    JudgeResult& res = results_[item];
    res.latency_s = t_first_[item] < 0 ? 0 : now_seconds() - t_first_[item];
    res.cached = res.http_requests == 0;
    ++done_;
    scored_ += res.scored ? 1 : 0;
    from_cache_ += res.cached ? 1 : 0;
    if (on_progress_) on_progress_(progress());
  }

  std::string excerpt(const std::string& body) const {
    std::string s = body.substr(0, kBodyExcerpt);
    for (char& c : s)
      if (c == '\n' || c == '\r') c = ' ';
    return replace_all(s, key_, "[API key]");
  }

  JudgeProgress progress() const {
    JudgeProgress p;
    p.done = done_, p.total = static_cast<int64_t>(items_.size()), p.scored = scored_, p.from_cache = from_cache_;
    p.requests = requests_, p.retries = retries_;
    p.elapsed_s = now_seconds() - t0_;
    p.rate = static_cast<double>(done_ - from_cache_) / std::max(1e-9, p.elapsed_s);
    p.eta_s = p.rate > 0 ? static_cast<double>(p.total - p.done) / p.rate : -1;
    return p;
  }

  static std::string progress_line(const JudgeProgress& p) {
    return fmt(
        "judge: %lld/%lld answers | %lld scored, %lld from cache | %lld requests, %lld retries | %.2f answers/s "
        "| ETA %s",
        static_cast<long long>(p.done), static_cast<long long>(p.total), static_cast<long long>(p.scored),
        static_cast<long long>(p.from_cache), static_cast<long long>(p.requests), static_cast<long long>(p.retries),
        p.rate, p.eta_s < 0 ? "?" : fmt("%.0fs", p.eta_s).c_str());
  }

  const JudgeConfig& cfg_;
  const std::vector<JudgeItem>& items_;
  const JudgeProgressFn& on_progress_;
  judge::JudgeCache cache_;
  judge::HttpMulti http_;
  const std::string endpoint_, key_;
  std::vector<JudgeResult> results_;
  std::vector<double> t_first_;       // when each item's first request went out (-1: none yet)
  std::multimap<double, Job> queue_;  // by not-before time; fresh jobs (time 0) in item order
  std::unordered_map<uint64_t, Job> in_flight_;
  std::mt19937_64 rng_;
  uint64_t next_tag_ = 0;
  double t0_ = 0, last_progress_ = 0;
  int64_t done_ = 0, scored_ = 0, from_cache_ = 0, requests_ = 0, retries_ = 0, repairs_ = 0, failures_ = 0;
};

}  // namespace

std::vector<JudgeResult> judge_answers(const JudgeConfig& cfg, const std::vector<JudgeItem>& items,
                                       const JudgeProgressFn& on_progress, JudgeStats* stats) {
  cfg.validate();
  if (items.empty()) {
    if (stats) *stats = {};
    return {};
  }
  JudgeRun run(cfg, items, on_progress);
  return run.run(stats);
}

}  // namespace polyllama
