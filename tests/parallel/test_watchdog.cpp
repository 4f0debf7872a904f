// The collective watchdog's logic (parallel/watchdog.hpp) with fake collectives, so that it is checked on any
// machine: the NCCL glue only supplies an event query, the communicator's async error and the abort. Timeouts are
// short (0.2-0.3 s) and the checks wait for the thread with generous deadlines (5 s), so a slow CI machine cannot
// make them flaky; a check that waits for something that must NOT happen waits 4 poll periods past the deadline.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "polyllama/parallel/watchdog.hpp"
#include "test_support.hpp"

using namespace polyllama;
using State = CollectiveWatchdog::State;

namespace {

struct Fatal {
  std::mutex mu;
  std::vector<std::string> messages;
  void operator()(const std::string& m) {
    std::lock_guard<std::mutex> l(mu);
    messages.push_back(m);
  }
  size_t count() {
    std::lock_guard<std::mutex> l(mu);
    return messages.size();
  }
  std::string first() {
    std::lock_guard<std::mutex> l(mu);
    return messages.empty() ? "" : messages[0];
  }
};

template <class F>
bool wait_until(F done, double seconds = 5) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

}  // namespace

TEST(CollectiveWatchdog, FinishedCollectivesAreDroppedAndNothingFires) {
  Fatal fatal;
  CollectiveWatchdog w("tp group of 2 (member 0)", {0.2, 0.01}, nullptr, [&](const std::string& m) { fatal(m); });
  std::atomic<bool> first_done{false};
  w.issued("all_reduce of 1.000 MiB f32", [&](std::string*) { return first_done ? State::done : State::pending; });
  w.issued("all_gather of 2.000 MiB bf16", [](std::string*) { return State::done; });
  EXPECT_EQ(w.pending(), 2u);
  first_done = true;  // within the timeout
  EXPECT_TRUE(wait_until([&] { return w.pending() == 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // past the timeout: nothing is pending any more
  EXPECT_EQ(fatal.count(), 0u);
  EXPECT_FALSE(w.fired());
}

TEST(CollectiveWatchdog, AStuckCollectiveFiresOnceNamingItAfterTheTimeout) {
  Fatal fatal;
  const auto t0 = std::chrono::steady_clock::now();
  CollectiveWatchdog w("dp group of 4 (member 3)", {0.3, 0.01}, nullptr, [&](const std::string& m) { fatal(m); });
  w.issued("broadcast of 0.500 MiB f32", [](std::string*) { return State::done; });
  w.issued("reduce_scatter of 64.000 MiB f32", [](std::string*) { return State::pending; });  // a peer died
  w.issued("all_gather of 32.000 MiB bf16", [](std::string*) { return State::pending; });
  ASSERT_TRUE(wait_until([&] { return fatal.count() > 0; }));
  const double after = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(after, 0.3);  // not before the timeout
  const std::string m = fatal.first();
  EXPECT_NE(m.find("NCCL watchdog: dp group of 4 (member 3) collective #1, reduce_scatter of 64.000 MiB f32, has not "
                   "finished after"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("(timeout 0.3 s, POLYLLAMA_NCCL_TIMEOUT): a rank died, hangs or called another collective"),
            std::string::npos)
      << m;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(fatal.count(), 1u);  // once, not once per stuck collective or per poll
  EXPECT_TRUE(w.fired());
}

TEST(CollectiveWatchdog, AFailedCollectiveFiresAtOnceWithItsError) {
  Fatal fatal;
  CollectiveWatchdog w("tp group of 2 (member 1)", {600, 0.01}, nullptr, [&](const std::string& m) { fatal(m); });
  const auto t0 = std::chrono::steady_clock::now();
  w.issued("all_reduce of 0.004 MiB f32", [](std::string* e) {
    *e = "CUDA error an illegal memory access was encountered";
    return State::failed;
  });
  ASSERT_TRUE(wait_until([&] { return fatal.count() > 0; }));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);  // not the 600 s
  EXPECT_NE(fatal.first().find("collective #0, all_reduce of 0.004 MiB f32, failed after 0 s: CUDA error an illegal "
                               "memory access"),
            std::string::npos)
      << fatal.first();
}

TEST(CollectiveWatchdog, TheCommunicatorsAsyncErrorFiresWithNothingPending) {
  Fatal fatal;
  std::atomic<bool> broken{false};
  CollectiveWatchdog w(
      "dp group of 2 (member 0)", {600, 0.01},
      [&] { return broken ? std::string("remote process exited or there was a network error") : std::string(); },
      [&](const std::string& m) { fatal(m); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(fatal.count(), 0u);
  broken = true;
  ASSERT_TRUE(wait_until([&] { return fatal.count() > 0; }));
  EXPECT_EQ(fatal.first(),
            "NCCL watchdog: dp group of 2 (member 0): asynchronous error: remote process exited or there was a "
            "network error");
}

TEST(CollectiveWatchdog, TimeoutZeroNeverFiresAndTheDestructorStopsPromptly) {
  Fatal fatal;
  const auto t0 = std::chrono::steady_clock::now();
  {
    CollectiveWatchdog w("tp group of 2 (member 0)", {0, 0.01}, nullptr, [&](const std::string& m) { fatal(m); });
    w.issued("all_reduce of 1.000 MiB f32", [](std::string*) { return State::pending; });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0);
  EXPECT_EQ(fatal.count(), 0u);
}

TEST(CollectiveWatchdog, TimeoutFromTheEnvironment) {
  auto set = [](const char* v) {
    if (v) setenv("POLYLLAMA_NCCL_TIMEOUT", v, 1);
    else unsetenv("POLYLLAMA_NCCL_TIMEOUT");
  };
  set(nullptr);
  EXPECT_EQ(nccl_timeout_from_env(), 600);
  set("1800");
  EXPECT_EQ(nccl_timeout_from_env(), 1800);
  set("0");
  EXPECT_EQ(nccl_timeout_from_env(), 0);
  for (const char* bad : {"ten", "-5", "nan", "60s"}) {
    set(bad);
    const auto [code, what] = test::error_of([] { nccl_timeout_from_env(); });
    EXPECT_EQ(code, kExitBadInput) << bad;
    EXPECT_NE(what.find(std::string("POLYLLAMA_NCCL_TIMEOUT=") + bad + ": expected the seconds"), std::string::npos)
        << what;
  }
  set(nullptr);
}
