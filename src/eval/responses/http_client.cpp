#include "http_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <mutex>

#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"

namespace polyllama::judge {

struct Transfer {
  uint64_t tag = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  HttpResponse resp;
  double t0 = 0;
  char errbuf[CURL_ERROR_SIZE] = {};
  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
  }
};

namespace {

constexpr size_t kMaxBody = size_t{16} << 20;

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (t->resp.body.size() + size * n > kMaxBody) return 0;  // libcurl stops with CURLE_WRITE_ERROR
  t->resp.body.append(data, size * n);
  return size * n;
}

bool starts_with_nocase(const std::string& s, const char* prefix) {
  size_t i = 0;
  for (; prefix[i]; ++i)
    if (i >= s.size() || std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string line(data, size * n);
  if (starts_with_nocase(line, "http/"))
    t->resp.retry_after.clear();  // a new response (after 100 Continue)
  else if (starts_with_nocase(line, "retry-after:"))
    t->resp.retry_after = trim(line.substr(12));
  return size * n;
}

// Failures of the connection or of the server's side of it, as opposed to a bad URL or option.
bool transient_code(CURLcode c) {
  switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

#define PL_CURL(call)                                                                                           \
  do {                                                                                                          \
    const auto rc_ = (call);                                                                                    \
    if (rc_ != 0)                                                                                               \
      ::polyllama::fail_runtime(std::string(#call " failed: code ") + std::to_string(rc_), __FILE__, __LINE__); \
  } while (0)

}  // namespace

HttpMulti::HttpMulti() {
  static std::once_flag once;  // curl_global_init is not thread-safe in every libcurl this may meet
  std::call_once(once, [] { PL_CURL(curl_global_init(CURL_GLOBAL_DEFAULT)); });
  multi_ = curl_multi_init();
  PL_CHECK(multi_ != nullptr, "curl_multi_init");
}

HttpMulti::~HttpMulti() {
  // Transfers still running (an exception unwound the judge) are abandoned.
  for (Transfer* t : live_) {
    curl_multi_remove_handle(static_cast<CURLM*>(multi_), t->easy);
    delete t;
  }
  curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

void HttpMulti::start(uint64_t tag, const HttpRequest& req) {
  auto owned = std::make_unique<Transfer>();  // freed here if an option fails
  Transfer* t = owned.get();
  t->tag = tag;
  t->easy = curl_easy_init();
  PL_CHECK(t->easy != nullptr, "curl_easy_init");
  for (const std::string& h : req.headers) t->headers = curl_slist_append(t->headers, h.c_str());
  t->headers = curl_slist_append(t->headers, "Content-Type: application/json");
  t->headers = curl_slist_append(t->headers, "Expect:");  // no 100-continue round trip for large prompts
  CURL* e = t->easy;
  PL_CURL(curl_easy_setopt(e, CURLOPT_URL, req.url.c_str()));
  PL_CURL(curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size())));
  PL_CURL(curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req.body.c_str()));
  PL_CURL(curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers));
  PL_CURL(curl_easy_setopt(e, CURLOPT_USERAGENT, "polyllama-judge"));
  PL_CURL(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(std::ceil(req.timeout_s * 1000))));
  PL_CURL(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L));
  PL_CURL(curl_easy_setopt(e, CURLOPT_VERBOSE, 0L));
  PL_CURL(curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""));
  PL_CURL(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body));
  PL_CURL(curl_easy_setopt(e, CURLOPT_WRITEDATA, t));
  PL_CURL(curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header));
  PL_CURL(curl_easy_setopt(e, CURLOPT_HEADERDATA, t));
  PL_CURL(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf));
  PL_CURL(curl_easy_setopt(e, CURLOPT_PRIVATE, t));
  t->t0 = now_seconds();
  PL_CURL(curl_multi_add_handle(static_cast<CURLM*>(multi_), e));
  live_.insert(owned.release());
}

std::vector<std::pair<uint64_t, HttpResponse>> HttpMulti::poll(double max_wait_s) {
  auto* m = static_cast<CURLM*>(multi_);
  std::vector<std::pair<uint64_t, HttpResponse>> done;
  auto collect = [&] {
    int running = 0, left = 0;
    PL_CURL(curl_multi_perform(m, &running));
    while (CURLMsg* msg = curl_multi_info_read(m, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
      HttpResponse& r = t->resp;
      const CURLcode code = msg->data.result;
      r.curl_code = static_cast<int>(code);
      r.seconds = now_seconds() - t->t0;
      curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &r.status);
      if (code != CURLE_OK) {
        r.timed_out = code == CURLE_OPERATION_TIMEDOUT;
        r.transient = transient_code(code);
        r.curl_error = t->errbuf[0] ? std::string(t->errbuf) : curl_easy_strerror(code);
        r.status = 0;  // a partial response is no response
      }
      curl_multi_remove_handle(m, t->easy);
      done.emplace_back(t->tag, std::move(r));
      live_.erase(t);
      delete t;
    }
  };
  collect();
  if (!done.empty()) return done;
  const int ms = static_cast<int>(std::clamp(max_wait_s, 0.0, 60.0) * 1000);
  PL_CURL(curl_multi_poll(m, nullptr, 0, ms, nullptr));
  collect();
  return done;
}

std::string chat_completions_url(const std::string& url) {
  std::string u = url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  const std::string tail = "/chat/completions";
  if (u.size() >= tail.size() && u.compare(u.size() - tail.size(), tail.size(), tail) == 0) return u;
  return u + tail;
}

std::string url_for_log(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const size_t host = scheme + 3, at = url.find('@', host), slash = url.find('/', host);
  if (at == std::string::npos || (slash != std::string::npos && at > slash)) return url;
  return url.substr(0, host) + url.substr(at + 1);
}

double retry_after_seconds(const std::string& value, double now_epoch_s) {
  const std::string v = trim(value);
  if (v.empty()) return -1;
  if (std::isdigit(static_cast<unsigned char>(v[0]))) {
    char* end = nullptr;
    const double s = std::strtod(v.c_str(), &end);
    return (end && *end == '\0' && std::isfinite(s)) ? s : -1;
  }
  const time_t t = curl_getdate(v.c_str(), nullptr);
  if (t < 0) return -1;
  return std::max(0.0, static_cast<double>(t) - now_epoch_s);
}

}  // namespace polyllama::judge
