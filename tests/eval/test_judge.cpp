// The response judge (eval/judge.hpp, src/eval/responses/):
//  * replies are parsed from plain JSON, prose and code fences, with key and value variants; anything else is
//    invalid, and the problem is named;
//  * against a scripted server (tests/eval/judge_server.py, started per test on an ephemeral port): the exact
//    scores of each reply shape; one repair request, after which an item stays unscored (scores -1, never 0);
//    429 with Retry-After (seconds and an HTTP date) waited out; 500 and a timeout retried; a 400 not retried;
//    retries capped; connection errors; at most `concurrency` requests in flight and exactly that many with enough
//    items; a rerun with the cache sends nothing, an interrupted run keeps what it paid for, a truncated cache line is
//    dropped; the API key reaches the server and nothing else (cache file, log output, error messages).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "../../src/eval/responses/http_client.hpp"
#include "../../src/eval/responses/judge_cache.hpp"
#include "../../src/eval/responses/rubric.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/eval/judge.hpp"
#include "test_support.hpp"

extern char** environ;

using namespace polyllama;
namespace fs = std::filesystem;
using Scores = std::array<int, kJudgeCriteria>;

namespace {

constexpr const char* kPython = "/usr/bin/python3";

// ---- the scripted server ----

class JudgeServerProcess {
 public:
  explicit JudgeServerProcess(const std::string& dir) {
    const std::string script = PL_FIXTURES "/../eval/judge_server.py", port_file = dir + "/port",
                      log = dir + "/server.log";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<std::string> args = {kPython, script, "--port-file", port_file};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, kPython, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) pid_ = -1;
    for (int i = 0; pid_ > 0 && i < 1500 && port_ == 0; ++i) {  // up to 15 s on a busy machine
      const std::string p = test::slurp(port_file);
      if (!p.empty())
        port_ = std::stoi(p);
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~JudgeServerProcess() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int st = 0;
    waitpid(pid_, &st, 0);
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

// GET http://127.0.0.1:port/stats over a plain socket (the library under test only POSTs).
nlohmann::json server_stats(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return nullptr;
  }
  const std::string req = "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string resp;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t body = resp.find("\r\n\r\n");
  return body == std::string::npos ? nlohmann::json(nullptr) : nlohmann::json::parse(resp.substr(body + 4));
}

// A port nothing listens on: bound by us, then released.
int closed_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

JudgeConfig test_config(int port) {
  JudgeConfig c;
  c.url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
  c.model = "judge-m";
  c.key_env = "PL_JUDGE_TEST_UNSET_KEY";
  c.concurrency = 4;
  c.timeout_s = 5;
  c.max_retries = 3;
  c.backoff_base_s = 0.01, c.backoff_max_s = 0.05;  // the suite stays fast; Retry-After still wins
  c.progress_interval_s = 60;
  return c;
}

JudgeItem item(const std::string& tag, const std::string& kase) {
  return {tag, "test", "问题：水的沸点是多少？", "", "An answer. CASE:" + kase + "#" + tag};
}

class JudgeServer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kPython, X_OK) != 0) GTEST_SKIP() << "no " << kPython;
    dir_ = test::temp_dir(std::string("judge_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    server_ = std::make_unique<JudgeServerProcess>(dir_);
    ASSERT_GT(server_->port(), 0) << "the scripted server did not start: " << test::slurp(dir_ + "/server.log");
  }
  nlohmann::json stats() const { return server_stats(server_->port()); }
  int64_t posts() const { return stats().at("posts").get<int64_t>(); }
  std::string dir_;
  std::unique_ptr<JudgeServerProcess> server_;
};

}  // namespace

// ---- parsing ----

TEST(JudgeParse, PlainJsonWithKeyAndValueVariants) {
  const auto p = judge::parse_scores(
      R"({"Accuracy": "2", "F": 2.0, "info": 3, "Logical-Coherence": 0, " H ": 1, "Reason": "fine"})");
  ASSERT_TRUE(p.ok) << p.problem;
  EXPECT_EQ(p.scores, (Scores{2, 2, 3, 0, 1}));
  EXPECT_EQ(p.reason, "fine");
  const auto q = judge::parse_scores(R"({"ACC": 3, "accuracy": 3, "fluency": 1, "INFORMATIVENESS": 0,
      "logical coherence": 3, "harmlessness": "3"})");  // the same criterion twice with one value is fine
  ASSERT_TRUE(q.ok) << q.problem;
  EXPECT_EQ(q.scores, (Scores{3, 1, 0, 3, 3}));
  EXPECT_EQ(q.reason, "");
}

TEST(JudgeParse, FencesProseAndNesting) {
  auto p = judge::parse_scores("Sure.\n```json\n{\"ACC\": 1, \"F\": 2, \"INFO\": 3, \"LC\": 0, \"H\": 2}\n```\n");
  ASSERT_TRUE(p.ok) << p.problem;
  EXPECT_EQ(p.scores, (Scores{1, 2, 3, 0, 2}));
  // A template with placeholders does not parse; braces inside strings do not unbalance; the last valid object wins.
  p = judge::parse_scores(
      R"(Format: {"accuracy": n, ...}. First guess {"ACC": 0, "F": 0, "INFO": 0, "LC": 0, "H": 0, "reason": "a } b"}
      but on reflection {"ACC": 3, "F": 3, "INFO": 2, "LC": 2, "H": 3, "reason": "final {x}"} done)");
  ASSERT_TRUE(p.ok) << p.problem;
  EXPECT_EQ(p.scores, (Scores{3, 3, 2, 2, 3}));
  EXPECT_EQ(p.reason, "final {x}");
  p = judge::parse_scores(R"({"scores": {"ACC": 1, "F": 1, "INFO": 1, "LC": 1, "H": 0}, "note": "nested"})");
  ASSERT_TRUE(p.ok) << p.problem;
  EXPECT_EQ(p.scores, (Scores{1, 1, 1, 1, 0}));
}

TEST(JudgeParse, InvalidRepliesNameTheProblem) {
  const std::string base = R"("F": 1, "INFO": 1, "LC": 1, "H": 1)";
  for (const std::string& bad : {"2.5", "\"high\"", "4", "-1", "true", "null", "\"2/3\"", "[2]", "\"\""}) {
    const auto p = judge::parse_scores("{\"ACC\": " + bad + ", " + base + "}");
    EXPECT_FALSE(p.ok) << bad;
    EXPECT_EQ(p.scores, (Scores{-1, -1, -1, -1, -1})) << bad;
    EXPECT_NE(p.problem.find("ACC: "), std::string::npos) << p.problem;
    EXPECT_NE(p.problem.find("not an integer from 0 to 3"), std::string::npos) << p.problem;
  }
  EXPECT_EQ(judge::parse_scores(R"({"ACC": 1, "F": 1, "INFO": 1, "LC": 1})").problem, "missing harmlessness");
  EXPECT_EQ(judge::parse_scores(R"({"ACC": 1, "accuracy": 2, )" + base + "}").problem,
            "conflicting values for accuracy");
  EXPECT_EQ(judge::parse_scores("  \n").problem, "empty reply");
  EXPECT_EQ(judge::parse_scores("Accuracy: 3, fluency: 3").problem, "no JSON object in the reply");
  EXPECT_EQ(judge::parse_scores(R"(I think {"quality": "good"}.)").problem,
            "no JSON object with the five scores in the reply");
  EXPECT_FALSE(judge::parse_scores(R"({"ACC": 1, "F": 1, "INFO": 1, "LC": 1, "H": 1)").ok);  // unbalanced
}

TEST(JudgeRubric, PromptHoldsEveryLevelAndTheItem) {
  JudgeItem it{"q1", "math", "问题：1+1=?", "", "答案是 2。"};
  const nlohmann::json m = nlohmann::json::parse(judge_messages_json(it));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0]["role"], "system");
  EXPECT_EQ(m[1]["role"], "user");
  const std::string user = m[1]["content"];
  for (int c = 0; c < kJudgeCriteria; ++c) {
    const std::string head = std::string(kJudgeCriterionNames[static_cast<size_t>(c)]) + " (" +
                             kJudgeCriterionAbbrevs[static_cast<size_t>(c)] + "):";
    const size_t at = user.find(head);
    ASSERT_NE(at, std::string::npos) << head;
    // The indented lines under the criterion's name define 0, 1, 2 and 3, in order.
    size_t end = user.find('\n', at);
    std::string levels;
    while (end != std::string::npos && user.compare(end + 1, 2, "  ") == 0) {
      levels += user.substr(end + 3, 4);
      end = user.find('\n', end + 1);
    }
    EXPECT_EQ(levels, "0 = 1 = 2 = 3 = ") << head;
  }
  EXPECT_NE(user.find("[QUESTION]\n问题：1+1=?\n"), std::string::npos);
  EXPECT_NE(user.find("[ANSWER]\n答案是 2。\n"), std::string::npos);
  EXPECT_EQ(user.find("[REFERENCE ANSWER]"), std::string::npos);
  EXPECT_NE(user.find(R"({"accuracy": n, "fluency": n, "informativeness": n, "logical_coherence": n, )"
                      R"("harmlessness": n, "reason": )"),
            std::string::npos);
  it.reference = "2";
  const std::string with_ref = nlohmann::json::parse(judge_messages_json(it))[1]["content"];
  EXPECT_NE(with_ref.find("[REFERENCE ANSWER]\n2\n[END OF REFERENCE ANSWER]"), std::string::npos);
  const nlohmann::json r = judge::repair_messages(m, "scores: good", "no JSON object in the reply");
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[2]["role"], "assistant");
  EXPECT_EQ(r[2]["content"], "scores: good");
  EXPECT_EQ(r[3]["role"], "user");
  EXPECT_NE(r[3]["content"].get<std::string>().find("no JSON object in the reply"), std::string::npos);
}

TEST(JudgeHttp, UrlsAndRetryAfter) {
  EXPECT_EQ(judge::chat_completions_url("http://127.0.0.1:8000/v1"), "http://127.0.0.1:8000/v1/chat/completions");
  EXPECT_EQ(judge::chat_completions_url("http://h/v1/"), "http://h/v1/chat/completions");
  EXPECT_EQ(judge::chat_completions_url("https://h/v1/chat/completions"), "https://h/v1/chat/completions");
  EXPECT_EQ(judge::url_for_log("https://user:pw@h:1/v1"), "https://h:1/v1");
  EXPECT_EQ(judge::url_for_log("https://h/v1?a=b@c"), "https://h/v1?a=b@c");
  EXPECT_DOUBLE_EQ(judge::retry_after_seconds("1", 0), 1);
  EXPECT_DOUBLE_EQ(judge::retry_after_seconds(" 2.5 ", 0), 2.5);
  // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 s since 1970.
  EXPECT_DOUBLE_EQ(judge::retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 7), 7);
  EXPECT_DOUBLE_EQ(judge::retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 + 7), 0);
  EXPECT_EQ(judge::retry_after_seconds("", 0), -1);
  EXPECT_EQ(judge::retry_after_seconds("soon", 0), -1);
  EXPECT_EQ(judge::retry_after_seconds("-3", 0), -1);
}

TEST(JudgeConfigValidate, NamesTheBadSetting) {
  JudgeConfig ok = test_config(1);
  EXPECT_EQ(test::error_of([&] { ok.validate(); }).first, 0);
  auto expect_bad = [&](auto edit, const std::string& flag) {
    JudgeConfig c = ok;
    edit(c);
    const auto [code, msg] = test::error_of([&] { c.validate(); });
    EXPECT_EQ(code, kExitBadInput) << flag;
    EXPECT_NE(msg.find(flag), std::string::npos) << msg;
  };
  expect_bad([](JudgeConfig& c) { c.url = ""; }, "--judge-url");
  expect_bad([](JudgeConfig& c) { c.url = "127.0.0.1:8000/v1"; }, "--judge-url");
  expect_bad([](JudgeConfig& c) { c.model = ""; }, "--judge-model");
  expect_bad([](JudgeConfig& c) { c.key_env = "MY KEY"; }, "--judge-key-env");
  expect_bad([](JudgeConfig& c) { c.concurrency = 0; }, "--judge-concurrency 0");
  expect_bad([](JudgeConfig& c) { c.timeout_s = 0; }, "--judge-timeout");
  expect_bad([](JudgeConfig& c) { c.max_retries = -1; }, "--judge-retries -1");
  expect_bad([](JudgeConfig& c) { c.backoff_max_s = 0.001; }, "--judge-backoff-max");
  expect_bad([](JudgeConfig& c) { c.max_tokens = 0; }, "--judge-max-tokens 0");
  expect_bad([](JudgeConfig& c) { c.temperature = -1; }, "--judge-temperature");
}

// ---- the cache file on its own ----

TEST(JudgeCacheFile, ReloadsVerifiesAndDropsATruncatedLine) {
  const std::string dir = test::temp_dir("judge_cache_file"), path = dir + "/sub/cache.jsonl";
  const nlohmann::json a = judge::request_messages({"a", "", "q", "", "A"}),
                       b = judge::request_messages({"b", "", "q", "", "B"});
  {
    judge::JudgeCache c(path);  // creates the missing directory
    c.put("m", a, "reply A");
    EXPECT_EQ(*c.find("m", a), "reply A");
    EXPECT_EQ(c.find("m", b), nullptr);
    EXPECT_EQ(c.find("other", a), nullptr);  // keyed by the judge model too
  }
  // A line whose stored hash claims to be b's but whose messages are a's answers only a: the hash is never trusted.
  nlohmann::json forged = {
      {"model", "m"},
      {"hash", fmt("%016llx", static_cast<unsigned long long>(judge::cache_hash("m", judge::dump_json(b))))},
      {"messages", a},
      {"reply", "forged"}};
  std::ofstream(path, std::ios::app) << forged.dump() << "\n"
                                     << R"({"model": "m", "hash": "12", "messa)";
  testing::internal::CaptureStderr();
  {
    judge::JudgeCache c(path);
    EXPECT_EQ(c.size(), 1);  // the forged line repeats a's key: the first reply stays
    EXPECT_EQ(*c.find("m", a), "reply A");
    EXPECT_EQ(c.find("m", b), nullptr);
    c.put("m", b, "reply B");
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("cache.jsonl:3: a truncated last line"), std::string::npos) << err;
  const std::string text = test::slurp(path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);  // a, forged, b: the partial line is gone
  EXPECT_EQ(text.back(), '\n');
  judge::JudgeCache c(path);
  EXPECT_EQ(*c.find("m", b), "reply B");
  // A broken line in the middle is not a crash artefact: refuse the file.
  test::spit(dir + "/bad.jsonl", "not json\n" + forged.dump() + "\n");
  const auto [code, msg] = test::error_of([&] { judge::JudgeCache bad(dir + "/bad.jsonl"); });
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_NE(msg.find("bad.jsonl:1"), std::string::npos) << msg;
}

// ---- against the scripted server ----

TEST_F(JudgeServer, ScoresEveryReplyShapeAndRepairsOnce) {
  const std::vector<JudgeItem> items = {item("a", "valid"),       item("b", "prose"),        item("c", "fence"),
                                        item("d", "repair_once"), item("e", "repair_never"), item("f", "not_chat")};
  std::vector<JudgeProgress> seen;
  JudgeStats st;
  const auto r = judge_answers(
      test_config(server_->port()), items, [&](const JudgeProgress& p) { seen.push_back(p); }, &st);
  ASSERT_EQ(r.size(), items.size());
  const std::vector<Scores> want = {{3, 2, 1, 0, 3}, {2, 3, 2, 1, 3}, {1, 2, 3, 2, 0}, {0, 1, 2, 3, 2}};
  const std::vector<std::string> reasons = {"valid", "prose", "fenced", "repaired"};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(r[i].scored) << i << ": " << r[i].error;
    EXPECT_EQ(r[i].scores, want[i]) << i;
    EXPECT_EQ(r[i].reason, reasons[i]);
    EXPECT_EQ(r[i].error, "");
    EXPECT_FALSE(r[i].cached);
  }
  EXPECT_EQ(r[0].http_requests, 1);
  EXPECT_FALSE(r[0].repaired);
  EXPECT_EQ(r[3].http_requests, 2);  // the first reply lacked harmlessness; the repair request fixed it
  EXPECT_TRUE(r[3].repaired);
  EXPECT_EQ(r[3].reply, R"({"accuracy": 0, "fluency": 1, "informativeness": 2, "logical_coherence": 3, )"
                        R"("harmlessness": 2, "reason": "repaired"})");
  // Twice without valid scores: unscored, not zeros.
  EXPECT_FALSE(r[4].scored);
  EXPECT_EQ(r[4].scores, (Scores{-1, -1, -1, -1, -1}));
  EXPECT_EQ(r[4].http_requests, 2);
  EXPECT_NE(r[4].error.find("(missing harmlessness)"), std::string::npos) << r[4].error;
  EXPECT_NE(r[4].error.find("harmlessness: 4 is not an integer from 0 to 3"), std::string::npos) << r[4].error;
  EXPECT_FALSE(r[5].scored);
  EXPECT_EQ(r[5].http_requests, 1);
  EXPECT_NE(r[5].error.find("not a chat completion"), std::string::npos) << r[5].error;
  EXPECT_EQ(st.scored, 4);
  EXPECT_EQ(st.unscored, 2);
  EXPECT_EQ(st.requests, 8);
  EXPECT_EQ(st.repairs, 2);
  EXPECT_EQ(st.retries, 0);
  ASSERT_EQ(seen.size(), items.size());
  EXPECT_EQ(seen.back().done, 6);
  EXPECT_EQ(seen.back().total, 6);
  const nlohmann::json s = stats();
  EXPECT_EQ(s["posts"], 8);
  EXPECT_EQ(s["last_path"], "/v1/chat/completions");
  EXPECT_EQ(s["last_body"]["model"], "judge-m");
  EXPECT_EQ(s["last_body"]["temperature"], 0.0);
  EXPECT_EQ(s["last_body"]["max_tokens"], 512);
  EXPECT_EQ(s["auth"], nlohmann::json::array({nullptr}));  // no key set: no Authorization header at all
}

TEST_F(JudgeServer, RetriesWithBackoffAndHonoursRetryAfter) {
  JudgeConfig cfg = test_config(server_->port());
  cfg.timeout_s = 0.7;
  cfg.url += "/chat/completions";  // the full endpoint works as well as the base
  const std::vector<JudgeItem> items = {item("a", "rate_limit"), item("b", "retry_date"),  item("c", "server_error"),
                                        item("d", "timeout"),    item("e", "bad_request"), item("f", "always_500")};
  JudgeStats st;
  testing::internal::CaptureStderr();
  const auto r = judge_answers(cfg, items, nullptr, &st);
  const std::string err = testing::internal::GetCapturedStderr();
  // 429 with Retry-After: 1 (the backoff alone would wait at most 0.01 s).
  EXPECT_TRUE(r[0].scored) << r[0].error;
  EXPECT_EQ(r[0].scores, (Scores{2, 2, 2, 2, 2}));
  EXPECT_EQ(r[0].http_requests, 2);
  EXPECT_GE(r[0].latency_s, 0.95);
  // 503 with Retry-After as an HTTP date 2 s ahead (whole seconds): at least 1 s.
  EXPECT_TRUE(r[1].scored) << r[1].error;
  EXPECT_EQ(r[1].scores, (Scores{1, 2, 3, 0, 1}));
  EXPECT_EQ(r[1].http_requests, 2);
  EXPECT_GE(r[1].latency_s, 0.95);
  EXPECT_TRUE(r[2].scored) << r[2].error;
  EXPECT_EQ(r[2].scores, (Scores{3, 3, 3, 3, 3}));
  EXPECT_EQ(r[2].http_requests, 2);
  EXPECT_LT(r[2].latency_s, 0.9);  // no Retry-After: the small backoff
  // The first request outlives timeout_s; the retry answers.
  EXPECT_TRUE(r[3].scored) << r[3].error;
  EXPECT_EQ(r[3].scores, (Scores{0, 0, 1, 1, 2}));
  EXPECT_EQ(r[3].http_requests, 2);
  EXPECT_GE(r[3].latency_s, 0.7);
  // 400: no retry, unscored with the status and the first 200 characters of the body.
  EXPECT_FALSE(r[4].scored);
  EXPECT_EQ(r[4].http_requests, 1);
  EXPECT_EQ(r[4].error, "HTTP 400: invalid request: " + std::string(200 - 17, 'x'));
  // Retries capped at max_retries.
  EXPECT_FALSE(r[5].scored);
  EXPECT_EQ(r[5].http_requests, cfg.max_retries + 1);
  EXPECT_EQ(r[5].error, "HTTP 500: still broken (gave up after 4 requests)");
  EXPECT_EQ(r[5].scores, (Scores{-1, -1, -1, -1, -1}));
  EXPECT_EQ(st.retries, 7);
  EXPECT_EQ(st.requests, 13);
  EXPECT_EQ(posts(), 13);
  EXPECT_NE(err.find("a: HTTP 429"), std::string::npos) << err;
  EXPECT_NE(err.find("retry 1/3 in 1.0s"), std::string::npos) << err;
  EXPECT_NE(err.find("d: no reply within 0.7s"), std::string::npos) << err;
}

TEST(JudgeConnection, RefusedConnectionsAreRetriedThenUnscored) {
  JudgeConfig cfg = test_config(closed_port());
  cfg.max_retries = 2;
  testing::internal::CaptureStderr();
  const auto r = judge_answers(cfg, {item("a", "valid")});
  testing::internal::GetCapturedStderr();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_FALSE(r[0].scored);
  EXPECT_EQ(r[0].http_requests, 3);
  EXPECT_NE(r[0].error.find("connection failed"), std::string::npos) << r[0].error;
  EXPECT_NE(r[0].error.find("(gave up after 3 requests)"), std::string::npos) << r[0].error;
}

TEST_F(JudgeServer, NeverExceedsTheConcurrencyAndReachesIt) {
  JudgeConfig cfg = test_config(server_->port());
  cfg.concurrency = 3;
  cfg.progress_interval_s = 0.2;
  std::vector<JudgeItem> items;
  for (int i = 0; i < 15; ++i) items.push_back(item("s" + std::to_string(i), "slow"));  // 0.25 s each
  testing::internal::CaptureStderr();
  const auto r = judge_answers(cfg, items);
  const std::string err = testing::internal::GetCapturedStderr();
  for (const JudgeResult& x : r) EXPECT_EQ(x.scores, (Scores{3, 2, 1, 0, 3}));
  const nlohmann::json s = stats();
  EXPECT_EQ(s["posts"], 15);
  EXPECT_EQ(s["max_in_flight"], 3);
  EXPECT_NE(err.find(" answers/s | ETA "), std::string::npos) << err;  // progress lines with a rate and an ETA
  EXPECT_NE(err.find("judge: 15 answers in "), std::string::npos) << err;
}

TEST_F(JudgeServer, CacheMakesARerunFree) {
  JudgeConfig cfg = test_config(server_->port());
  cfg.cache_path = dir_ + "/judge_cache.jsonl";
  std::vector<JudgeItem> items = {item("a", "valid"), item("b", "prose"), item("c", "repair_once"),
                                  item("d", "repair_never")};
  items.push_back(item("u", "valid"));
  items.back().answer = "caf\xC3 (cut mid-character) CASE:valid#u";  // not UTF-8: must still be one stable key
  JudgeStats st;
  const auto first = judge_answers(cfg, items, nullptr, &st);
  EXPECT_EQ(st.requests, 7);
  EXPECT_EQ(posts(), 7);
  std::string text = test::slurp(cfg.cache_path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 7);  // every reply, the repair replies included
  // Requests run concurrently, so replies reach the cache in the order they finish: find item a's line.
  const nlohmann::json want_messages = nlohmann::json::parse(judge_messages_json(items[0]));
  nlohmann::json line;
  for (size_t pos = 0, end; (end = text.find('\n', pos)) != std::string::npos; pos = end + 1) {
    nlohmann::json l = nlohmann::json::parse(text.substr(pos, end - pos));
    if (l["messages"] == want_messages) line = l;
  }
  ASSERT_TRUE(line.is_object()) << "no cache line for item a: " << text;
  EXPECT_EQ(line["model"], "judge-m");
  EXPECT_EQ(line["hash"].get<std::string>().size(), 16u);
  EXPECT_EQ(line["reply"], R"({"accuracy": 3, "fluency": 2, "informativeness": 1, "logical_coherence": 0, )"
                           R"("harmlessness": 3, "reason": "valid"})");

  // A rerun, then one after a crash mid-write: zero requests, the same results.
  for (int round = 0; round < 2; ++round) {
    testing::internal::CaptureStderr();
    const auto again = judge_answers(cfg, items, nullptr, &st);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(posts(), 7) << round;
    EXPECT_EQ(st.requests, 0);
    EXPECT_EQ(st.from_cache, 5);
    for (size_t i = 0; i < items.size(); ++i) {
      EXPECT_EQ(again[i].scored, first[i].scored) << i;
      EXPECT_EQ(again[i].scores, first[i].scores) << i;
      EXPECT_EQ(again[i].repaired, first[i].repaired) << i;
      EXPECT_EQ(again[i].error, first[i].error) << i;
      EXPECT_TRUE(again[i].cached) << i;
      EXPECT_EQ(again[i].http_requests, 0) << i;
    }
    if (round == 1) EXPECT_NE(err.find("a truncated last line"), std::string::npos) << err;
    std::ofstream(cfg.cache_path, std::ios::app) << R"({"model": "judge-m", "hash": "0123", "mes)";
  }
  // Another judge model is another key.
  cfg.model = "judge-2";
  judge_answers(cfg, {items[0]}, nullptr, &st);
  EXPECT_EQ(st.requests, 1);
  EXPECT_EQ(posts(), 8);
  text = test::slurp(cfg.cache_path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 8);  // the partial line was dropped, then one appended
}

TEST_F(JudgeServer, AnInterruptedRunKeepsWhatItPaidFor) {
  JudgeConfig cfg = test_config(server_->port());
  cfg.cache_path = dir_ + "/judge_cache.jsonl";
  cfg.concurrency = 1;
  const std::vector<JudgeItem> items = {item("a", "valid"), item("b", "slow"), item("c", "slow")};
  // The progress call follows each result: the reply must be on disk by then (flushed, not just buffered).
  std::string on_disk;
  EXPECT_THROW(judge_answers(cfg, items,
                             [&](const JudgeProgress&) {
                               on_disk = test::slurp(cfg.cache_path);
                               throw std::runtime_error("killed");
                             }),
               std::runtime_error);
  EXPECT_EQ(std::count(on_disk.begin(), on_disk.end(), '\n'), 1);
  const int64_t paid = posts();
  EXPECT_GE(paid, 1);
  JudgeStats st;
  const auto r = judge_answers(cfg, items, nullptr, &st);
  EXPECT_TRUE(r[0].cached);  // answered before the interruption
  EXPECT_EQ(r[0].scores, (Scores{3, 2, 1, 0, 3}));
  EXPECT_EQ(st.requests, 2);
  EXPECT_EQ(posts(), paid + 2);
}

TEST_F(JudgeServer, TheApiKeyReachesTheServerAndNothingElse) {
  const std::string secret = fmt("sk-test-%d-%lld", static_cast<int>(getpid()),
                                 static_cast<long long>(std::chrono::steady_clock::now().time_since_epoch().count()));
  ASSERT_EQ(setenv("PL_JUDGE_TEST_KEY", (secret + "\n").c_str(), 1), 0);  // a trailing newline is dropped
  JudgeConfig cfg = test_config(server_->port());
  cfg.key_env = "PL_JUDGE_TEST_KEY";
  cfg.cache_path = dir_ + "/judge_cache.jsonl";
  cfg.progress_interval_s = 0.05;
  const std::vector<JudgeItem> items = {item("a", "valid"),        item("b", "echo_auth"),   item("c", "rate_limit"),
                                        item("d", "repair_never"), item("e", "bad_request"), item("f", "slow")};
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const auto r = judge_answers(cfg, items);
  const std::string out = testing::internal::GetCapturedStdout(), err = testing::internal::GetCapturedStderr();
  unsetenv("PL_JUDGE_TEST_KEY");
  EXPECT_EQ(stats()["auth"], nlohmann::json::array({"Bearer " + secret}));
  EXPECT_TRUE(r[0].scored);
  EXPECT_EQ(r[1].error,
            "HTTP 401: {\"error\": {\"message\": \"Incorrect API key provided: Bearer [API key]\"}} "
            "(check the API key in $PL_JUDGE_TEST_KEY)");
  EXPECT_NE(err.find("API key from $PL_JUDGE_TEST_KEY"), std::string::npos) << err;
  EXPECT_NE(err.find("unscored"), std::string::npos) << err;  // the log did say things; none of them the key
  EXPECT_EQ(err.find(secret), std::string::npos);
  EXPECT_EQ(out.find(secret), std::string::npos);
  for (const JudgeResult& x : r) {
    EXPECT_EQ(x.error.find(secret), std::string::npos);
    EXPECT_EQ(x.reply.find(secret), std::string::npos);
    EXPECT_EQ(x.reason.find(secret), std::string::npos);
  }
  int files = 0;
  for (const auto& f : fs::recursive_directory_iterator(dir_)) {
    if (!f.is_regular_file()) continue;
    ++files;
    EXPECT_EQ(test::slurp(f.path().string()).find(secret), std::string::npos) << f.path();
  }
  EXPECT_GE(files, 2);  // the cache file and the server's log at least
  EXPECT_FALSE(test::slurp(cfg.cache_path).empty());
}
