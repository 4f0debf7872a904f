#pragma once
// What guards a run directory while a training verb uses it: the lock that keeps a second process out, and
// RUN/status.json, which tells a job script how the run ended (launchers such as mpirun and srun mask exit codes).
// World rank 0 alone locks and writes; both are plain POSIX, no MPI.
#include <cstdint>
#include <string>

namespace polyllama {

// flock(LOCK_EX | LOCK_NB) on RUN/.lock (RUN is created), held until the process exits: the kernel releases it
// however the process ends, kill -9 included. The file records "host pid" of the holder. Returns "" once held,
// else the message to fail with, naming the holder's host and pid. A file system without flock support gets a
// warning and no lock.
std::string try_lock_run_dir(const std::string& run_dir);

enum class RunState { running, done, stopped, failed };
const char* run_state_name(RunState s);

// RUN/status.json, written atomically: {"state", "reason", "step", "time"} (time: UTC, ISO 8601).
void write_run_status(const std::string& run_dir, RunState state, const std::string& reason, int64_t step);

// The run this process trains, so that an error caught far from the verb (cli/main) can still mark it failed.
// The training verb registers it on world rank 0 (the one writer of status.json), which writes "running"; the
// trainer keeps its step current; the verb or the error path ends it. Without a registered run these do nothing.
void begin_active_run(const std::string& run_dir, int64_t step);
void set_active_run_step(int64_t step);
void end_active_run(RunState state, const std::string& reason);
// end_active_run(failed, reason) that never throws (the caller is already reporting an error).
void record_active_run_failure(const std::string& reason) noexcept;

}  // namespace polyllama
