#pragma once
// Evaluation under mpirun: the questions of every task split over the data-parallel groups of a layout (each a
// --tp group holding one model, as `generate`), rank 0 gathering every answer.
//
// The unit of work is a whole subject (its questions of one scoring kind): the engine computes a subject's shared
// few-shot prefix once and forms its batches from that subject's questions alone, so a subject's results do not
// depend on which group computes it or what else that group computes. `-np 1` and `-np 2` therefore write
// bit-identical log-probabilities; a tp group sums its ranks' partial products in another order, so `--tp 2`
// moves them by rounding only (predictions change only where two options are within that rounding).
// Subjects go to groups longest first, each to the group with the least work so far (LPT), by prompt bytes.
#include <vector>

#include "polyllama/eval/engine.hpp"
#include "polyllama/parallel/parallel.hpp"

namespace polyllama {

// Every rank calls it with the same questions; world rank 0 returns every response (in question order), the other
// ranks an empty vector. progress (rank 0): its own group's questions done and assigned.
std::vector<Response> answer_distributed(LlamaModel& model, const Tokenizer& tok, const EngineConfig& cfg,
                                         const ParallelContext& par, const std::vector<Question>& questions,
                                         const EvalProgressFn& progress = {}, EngineStats* stats = nullptr);

// Items of `cost` over `parts` groups, longest first, each to the least loaded group (ties to the lower group,
// items of equal cost in index order): the group of each item. Deterministic on every rank.
std::vector<int> assign_longest_first(const std::vector<double>& cost, int parts);

}  // namespace polyllama
