#include "polyllama/core/shard_spec.hpp"

#include "polyllama/core/error.hpp"

namespace polyllama {

ShardSpec ShardSpec::full(const std::vector<int64_t>& shape) {
  return ShardSpec{shape, std::vector<int64_t>(shape.size(), 0), shape, 0};
}

ShardSpec ShardSpec::split(const std::vector<int64_t>& shape, int axis, int parts, int index, int replica_id) {
  const auto a = static_cast<size_t>(axis);
  PL_CHECK(a < shape.size() && parts > 0 && index >= 0 && index < parts, "bad split");
  if (shape[a] % parts != 0)
    fail_input("dimension " + std::to_string(shape[a]) + " does not divide into " + std::to_string(parts) + " parts");
  ShardSpec s = full(shape);
  s.local_shape[a] = shape[a] / parts;
  s.global_offset[a] = s.local_shape[a] * index;
  s.replica_id = replica_id;
  return s;
}

int64_t ShardSpec::local_numel() const {
  int64_t n = 1;
  for (int64_t d : local_shape) n *= d;
  return n;
}

std::string ShardSpec::str() const {
  std::string s = "offset (";
  for (size_t i = 0; i < global_offset.size(); ++i) s += (i ? ", " : "") + std::to_string(global_offset[i]);
  s += ") shape (";
  for (size_t i = 0; i < local_shape.size(); ++i) s += (i ? ", " : "") + std::to_string(local_shape[i]);
  return s + ") replica " + std::to_string(replica_id);
}

std::string check_coverage(const std::vector<ShardSpec>& blocks) {
  if (blocks.empty()) return "no blocks";
  const std::vector<int64_t>& g = blocks[0].global_shape;
  int64_t total = 1, covered = 0;
  for (int64_t d : g) total *= d;
  std::vector<const ShardSpec*> writers;
  for (const ShardSpec& b : blocks) {
    if (b.global_shape != g) return "ranks disagree on the global shape";
    if (b.global_offset.size() != g.size() || b.local_shape.size() != g.size()) return "rank mismatch in " + b.str();
    for (size_t i = 0; i < g.size(); ++i)
      if (b.global_offset[i] < 0 || b.local_shape[i] < 0 || b.global_offset[i] + b.local_shape[i] > g[i])
        return "block outside the tensor: " + b.str();
    if (b.replica_id != 0) continue;
    for (const ShardSpec* w : writers) {
      bool disjoint = false;
      for (size_t i = 0; i < g.size() && !disjoint; ++i)
        disjoint = b.global_offset[i] >= w->global_offset[i] + w->local_shape[i] ||
                   w->global_offset[i] >= b.global_offset[i] + b.local_shape[i];
      if (!disjoint && b.local_numel() > 0 && w->local_numel() > 0) return "blocks overlap: " + b.str() + " and " + w->str();
    }
    writers.push_back(&b);
    covered += b.local_numel();
  }
  if (covered != total)
    return "blocks cover " + std::to_string(covered) + " of " + std::to_string(total) + " elements";
  return "";
}

}  // namespace polyllama
