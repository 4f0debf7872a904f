#include "polyllama/core/log.hpp"

#include <sys/resource.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>

namespace polyllama {

namespace {
int g_log_rank = 0;  // set once at startup from the world rank; logging is the only consumer
}

void set_log_rank(int world_rank) { g_log_rank = world_rank; }

void log_info(const std::string& line) {
  if (g_log_rank != 0) return;
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void log_warn(const std::string& line) {
  std::fprintf(stderr, "[rank %d] warning: %s\n", g_log_rank, line.c_str());
  std::fflush(stderr);
}

size_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<size_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

}  // namespace polyllama
