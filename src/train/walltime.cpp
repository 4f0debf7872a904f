#include "polyllama/train/walltime.hpp"

#include <algorithm>

namespace polyllama {

void WalltimeGuard::record_step(double seconds) { max_step_s = std::max(max_step_s, seconds); }
void WalltimeGuard::record_save(double seconds) { max_save_s = std::max(max_save_s, seconds); }

bool WalltimeGuard::should_stop(double now) const {
  if (!armed()) return false;
  return now + max_step_s + save_estimate() > job_end - margin_s;
}

}  // namespace polyllama
