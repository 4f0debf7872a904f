#pragma once
// A watchdog over the collectives of an asynchronous communicator (NCCL): a collective is enqueued on a stream and
// returns at once, so a peer that died, a broken link or a mismatched call never shows up as an error on the host;
// the next synchronisation just hangs. The watchdog thread polls every issued collective and the communicator's
// asynchronous error, and calls `fatal` once, with a message naming the group, the collective and what went
// wrong, when one failed or has not finished within the timeout. The NCCL glue (nccl_communicator.cpp) makes
// `fatal` abort the communicator and the job (MPI_Abort), so every rank ends within seconds instead of hanging
// until the scheduler's limit, as PyTorch's ProcessGroupNCCL watchdog does. The logic is here, free of CUDA, so
// that it is tested on any machine (tests/parallel/test_watchdog.cpp).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace polyllama {

class CollectiveWatchdog {
 public:
  enum class State { pending, done, failed };
  struct Options {
    double timeout_s = 600;  // a collective pending longer than this is fatal (0: never)
    double poll_s = 0.05;    // how often the thread looks
  };
  using Poll = std::function<State(std::string* error)>;  // one collective: finished? (error set when failed)
  // comm_error: the communicator's asynchronous error, "" when none; fatal: called once, on the watchdog thread.
  CollectiveWatchdog(std::string group, Options opts, std::function<std::string()> comm_error,
                     std::function<void(const std::string&)> fatal);
  ~CollectiveWatchdog();  // stops and joins the thread; never calls fatal afterwards
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // A collective just enqueued: `what` names it ("all_reduce of 4.0 MiB bf16"), `poll` says when it is done.
  void issued(std::string what, Poll poll);
  // Collectives issued and not yet seen finished (for tests and messages).
  size_t pending() const;
  // Whether fatal has been called.
  bool fired() const;

 private:
  struct Item {
    uint64_t seq;
    std::string what;
    std::chrono::steady_clock::time_point start;
    Poll poll;
  };
  void run();
  void fire(const std::string& msg);

  std::string group_;
  Options opts_;
  std::function<std::string()> comm_error_;
  std::function<void(const std::string&)> fatal_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> items_;
  uint64_t next_seq_ = 0;
  bool stop_ = false, fired_ = false;
  std::thread thread_;
};

// The timeout of NCCL collectives from POLYLLAMA_NCCL_TIMEOUT (seconds; 0 turns the watchdog off), default 600;
// anything else is an error naming the variable.
double nccl_timeout_from_env();

}  // namespace polyllama
