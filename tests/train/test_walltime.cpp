// --exit-before's decision (WalltimeGuard), against hand-derived stop times: a job ending at t = 1000 with a margin
// of 100 s must be saved and gone by t = 900, so the run stops once now + longest step + save estimate > 900.
#include <gtest/gtest.h>

#include "polyllama/train/walltime.hpp"

namespace polyllama {
namespace {

WalltimeGuard guard(double end, double margin) {
  WalltimeGuard g;
  g.job_end = end;
  g.margin_s = margin;
  return g;
}

TEST(Walltime, UnarmedNeverStops) {
  WalltimeGuard none;
  EXPECT_FALSE(none.should_stop(1e12));
  WalltimeGuard no_margin = guard(1000, 0);
  EXPECT_FALSE(no_margin.should_stop(5000));  // past the end, but --exit-before is off
  WalltimeGuard no_end = guard(0, 600);
  EXPECT_FALSE(no_end.should_stop(5000));     // the end is unknown
}

TEST(Walltime, BeforeAnyStepOnlyTheMarginCounts) {
  const WalltimeGuard g = guard(1000, 100);
  EXPECT_FALSE(g.should_stop(899));
  EXPECT_FALSE(g.should_stop(900));  // exactly at the deadline nothing more is needed
  EXPECT_TRUE(g.should_stop(900.5));
}

TEST(Walltime, BeforeTheFirstSaveTheSaveIsAssumedToTakeAStep) {
  WalltimeGuard g = guard(1000, 100);
  g.record_step(10);
  EXPECT_DOUBLE_EQ(g.save_estimate(), 10);
  EXPECT_FALSE(g.should_stop(880));  // 880 + 10 + 10 = 900
  EXPECT_TRUE(g.should_stop(881));   // 881 + 10 + 10 = 901 > 900
}

TEST(Walltime, MeasuredSaveAndTheLongestStepDecide) {
  WalltimeGuard g = guard(1000, 100);
  g.record_step(10);
  g.record_save(30);
  g.record_step(4);  // a shorter step does not lower the estimate
  g.record_save(2);
  EXPECT_DOUBLE_EQ(g.max_step_s, 10);
  EXPECT_DOUBLE_EQ(g.save_estimate(), 30);
  EXPECT_FALSE(g.should_stop(860));  // 860 + 10 + 30 = 900
  EXPECT_TRUE(g.should_stop(861));
  g.record_step(25);  // e.g. a step with an evaluation
  EXPECT_FALSE(g.should_stop(845));  // 845 + 25 + 30 = 900
  EXPECT_TRUE(g.should_stop(846));
}

}  // namespace
}  // namespace polyllama
