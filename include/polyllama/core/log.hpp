#pragma once
// Rank-0 logging that stays readable in a Slurm log: one line per message, flushed.
#include <string>

namespace polyllama {

void set_log_rank(int world_rank);
void log_info(const std::string& line);   // rank 0 only, to stdout
void log_warn(const std::string& line);   // every rank, to stderr, prefixed with the rank
// Peak resident set size of this process so far, in bytes.
size_t peak_rss_bytes();
double now_seconds();
std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));

}  // namespace polyllama
