#pragma once
// --exit-before: when to stop a run so that it saves and exits before its job's time limit. The trainer asks
// should_stop() before each step on world rank 0 and broadcasts the answer, so every rank stops at the same step.

namespace polyllama {

struct WalltimeGuard {
  double job_end = 0;   // the job's end, seconds since the epoch; 0: unknown, never stop for it
  double margin_s = 0;  // --exit-before, in seconds: the run must be saved and gone this long before job_end
  double max_step_s = 0;  // the longest step (with its logging and evaluation) seen in this process
  double max_save_s = 0;  // the longest checkpoint save seen in this process; 0: none yet

  bool armed() const { return job_end > 0 && margin_s > 0; }
  void record_step(double seconds);
  void record_save(double seconds);
  // The time a save is assumed to take: the longest measured, or before the first save the longest step (a save
  // writes weights and moments once, a step reads and writes them several times).
  double save_estimate() const { return max_save_s > 0 ? max_save_s : max_step_s; }
  // True when one more step and the save after it could end later than job_end - margin_s. The longest times seen
  // are used, not averages: a step that runs over costs the whole allocation's work since the last save.
  bool should_stop(double now) const;
};

}  // namespace polyllama
