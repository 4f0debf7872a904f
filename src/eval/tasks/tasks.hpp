#pragma once
// The benchmark tasks, one file each (ceval.cpp, mmlu.cpp, agieval.cpp, gaokao.cpp); task.cpp lists them for
// make_task. Private to the eval area.
#include <memory>

#include "polyllama/eval/task.hpp"

namespace polyllama {

std::unique_ptr<Task> make_ceval_task();
std::unique_ptr<Task> make_mmlu_task();
std::unique_ptr<Task> make_agieval_task();
std::unique_ptr<Task> make_gaokao_task();

}  // namespace polyllama
