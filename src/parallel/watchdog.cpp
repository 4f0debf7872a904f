#include "polyllama/parallel/watchdog.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "polyllama/core/error.hpp"

namespace polyllama {

CollectiveWatchdog::CollectiveWatchdog(std::string group, Options opts, std::function<std::string()> comm_error,
                                       std::function<void(const std::string&)> fatal)
    : group_(std::move(group)), opts_(opts), comm_error_(std::move(comm_error)), fatal_(std::move(fatal)) {
  thread_ = std::thread([this] { run(); });
}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CollectiveWatchdog::issued(std::string what, Poll poll) {
  std::lock_guard<std::mutex> lock(mu_);
  items_.push_back({next_seq_++, std::move(what), std::chrono::steady_clock::now(), std::move(poll)});
}

size_t CollectiveWatchdog::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return items_.size();
}

bool CollectiveWatchdog::fired() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fired_;
}

void CollectiveWatchdog::fire(const std::string& msg) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (fired_) return;
    fired_ = true;
  }
  fatal_(msg);
}

void CollectiveWatchdog::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_ && !fired_) {
    cv_.wait_for(lock, std::chrono::duration<double>(opts_.poll_s));
    if (stop_) break;
    // Collectives of one communicator run in issue order on its stream: only the oldest can be the one stuck,
    // and once it finished the next is looked at in the same round.
    while (!items_.empty() && !stop_) {
      const Item front = items_.front();
      lock.unlock();
      std::string error;
      const State s = front.poll(&error);
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - front.start).count();
      char head[160];
      std::snprintf(head, sizeof head, "NCCL watchdog: %s collective #%llu, ", group_.c_str(),
                    static_cast<unsigned long long>(front.seq));
      if (s == State::failed) {
        fire(head + front.what + ", failed after " + std::to_string(static_cast<int>(waited)) + " s: " + error);
        lock.lock();
        break;
      }
      if (s == State::pending) {
        if (opts_.timeout_s > 0 && waited > opts_.timeout_s) {
          char tail[200];
          std::snprintf(tail, sizeof tail,
                        ", has not finished after %.0f s (timeout %g s, POLYLLAMA_NCCL_TIMEOUT): a rank died, "
                        "hangs or called another collective",
                        waited, opts_.timeout_s);
          fire(head + front.what + tail);
        }
        lock.lock();
        break;
      }
      lock.lock();
      items_.pop_front();
    }
    if (stop_ || fired_) break;
    lock.unlock();
    const std::string err = comm_error_ ? comm_error_() : std::string();
    if (!err.empty()) fire("NCCL watchdog: " + group_ + ": asynchronous error: " + err);
    lock.lock();
  }
}

double nccl_timeout_from_env() {
  const char* v = std::getenv("POLYLLAMA_NCCL_TIMEOUT");
  if (!v || !*v) return 600;
  errno = 0;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  if (errno != 0 || end == v || *end != '\0' || !std::isfinite(s) || s < 0)
    fail_input(std::string("POLYLLAMA_NCCL_TIMEOUT=") + v +
               ": expected the seconds a collective may take before the job is aborted (>= 0; 0: no watchdog)");
  return s;
}

}  // namespace polyllama
