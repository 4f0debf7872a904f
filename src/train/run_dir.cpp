#include "polyllama/train/run_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>

#include "polyllama/core/atomic_file.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"

namespace fs = std::filesystem;

namespace polyllama {

namespace {

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct ActiveRun {
  std::mutex mu;
  bool active = false;
  std::string run_dir;
  int64_t step = 0;
};
ActiveRun& active_run() {
  static ActiveRun r;
  return r;
}

}  // namespace

std::string try_lock_run_dir(const std::string& run_dir) {
  // Descriptors of the locks this process holds: never closed, so each lock lasts as long as the process.
  static std::vector<int> held;
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec) return "cannot create the run directory " + run_dir + ": " + ec.message();
  const std::string path = (fs::path(run_dir) / ".lock").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return "cannot open the run directory's lock " + path + ": " + std::strerror(errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) {  // e.g. a parallel file system mounted without flock support
      log_warn("cannot lock " + path + " (" + std::strerror(err) + "): nothing keeps a second run out of " + run_dir);
      ::close(fd);
      return "";
    }
    char buf[512] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    std::string host = holder, pid;
    if (const size_t sp = holder.rfind(' '); sp != std::string::npos) host = holder.substr(0, sp), pid = holder.substr(sp + 1);
    return run_dir + " is in use by another polyllama process (" +
           (holder.empty() ? std::string("it has not yet written its host and pid")
                           : "host " + host + ", pid " + pid) +
           ", holding " + path + "); wait for it to end or choose another --run-dir";
  }
  const std::string me = host_name() + " " + std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size()))
    log_warn("cannot record the lock holder in " + path + ": " + std::strerror(errno));
  held.push_back(fd);
  return "";
}

const char* run_state_name(RunState s) {
  switch (s) {
    case RunState::running: return "running";
    case RunState::done: return "done";
    case RunState::stopped: return "stopped";
    case RunState::failed: return "failed";
  }
  return "unknown";
}

void write_run_status(const std::string& run_dir, RunState state, const std::string& reason, int64_t step) {
  const nlohmann::json j = {
      {"state", run_state_name(state)}, {"reason", reason}, {"step", step}, {"time", utc_now()}};
  write_file_atomically((fs::path(run_dir) / "status.json").string(),
                        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

void begin_active_run(const std::string& run_dir, int64_t step) {
  ActiveRun& r = active_run();
  {
    std::lock_guard<std::mutex> g(r.mu);
    r.active = true, r.run_dir = run_dir, r.step = step;
  }
  write_run_status(run_dir, RunState::running, "", step);
}

void set_active_run_step(int64_t step) {
  ActiveRun& r = active_run();
  std::lock_guard<std::mutex> g(r.mu);
  r.step = step;
}

void end_active_run(RunState state, const std::string& reason) {
  ActiveRun& r = active_run();
  std::string dir;
  int64_t step = 0;
  {
    std::lock_guard<std::mutex> g(r.mu);
    if (!r.active) return;
    r.active = false, dir = r.run_dir, step = r.step;
  }
  write_run_status(dir, state, reason, step);
}

void record_active_run_failure(const std::string& reason) noexcept {
  try {
    end_active_run(RunState::failed, reason);
  } catch (...) {  // a full disk: the exit code and stderr still say it
  }
}

}  // namespace polyllama
