#pragma once
// Concurrent HTTP POSTs over libcurl's multi interface, from one thread: the caller starts requests (as many as it
// wants in flight) and polls for the finished ones. Nothing here retries or logs; the judge decides. No request
// is ever made verbose, so headers (the Authorization one) never reach a log. Private to the eval area.
#include <cstdint>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace polyllama::judge {

struct HttpRequest {
  std::string url;
  std::string body;                  // POSTed as application/json
  std::vector<std::string> headers;  // extra "Name: value" lines
  double timeout_s = 120;            // connection to last byte
};

struct HttpResponse {
  long status = 0;          // 0: no HTTP response (see curl_code)
  std::string body;         // at most 16 MiB; more is a transfer error
  std::string retry_after;  // the Retry-After header's value, "" when absent
  int curl_code = 0;        // CURLcode; 0 = the transfer completed
  bool timed_out = false;   // curl_code is CURLE_OPERATION_TIMEDOUT
  bool transient = false;   // a timeout or connection-level failure worth retrying
  std::string curl_error;   // libcurl's message when curl_code != 0 (never holds headers)
  double seconds = 0;
};

struct Transfer;  // one request in flight (http_client.cpp)

class HttpMulti {
 public:
  HttpMulti();
  ~HttpMulti();
  HttpMulti(const HttpMulti&) = delete;
  HttpMulti& operator=(const HttpMulti&) = delete;

  // Starts a POST; `tag` comes back with its response.
  void start(uint64_t tag, const HttpRequest& req);
  int in_flight() const { return static_cast<int>(live_.size()); }
  // Drives the transfers for up to max_wait_s (returning early when one finishes) and returns the finished ones.
  std::vector<std::pair<uint64_t, HttpResponse>> poll(double max_wait_s);

 private:
  void* multi_ = nullptr;  // CURLM*
  std::unordered_set<Transfer*> live_;
};

// POST target of a config url: a url ending in /chat/completions as it is, else the base + "/chat/completions".
std::string chat_completions_url(const std::string& url);
// The url without user:password@ (for messages).
std::string url_for_log(const std::string& url);
// Seconds to wait from a Retry-After value: delay-seconds ("1", "2.5") or an HTTP date ("Wed, 21 Oct 2015 07:28:00
// GMT") relative to now_epoch_s (seconds since 1970; 0 or less in the past); -1 when absent or unreadable.
double retry_after_seconds(const std::string& value, double now_epoch_s);

}  // namespace polyllama::judge
