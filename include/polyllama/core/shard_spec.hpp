#pragma once
// Where a rank's local tensor sits inside the full logical tensor: the contract between the parallel layout
// and checkpoints. A checkpoint stores full logical tensors; each rank writes its hyperslab, and only replica 0
// of identical copies (data-parallel ranks) writes, so any layout can write and any layout can read.
#include <cstdint>
#include <string>
#include <vector>

namespace polyllama {

struct ShardSpec {
  std::vector<int64_t> global_shape;   // the full logical tensor
  std::vector<int64_t> global_offset;  // where this rank's block starts
  std::vector<int64_t> local_shape;    // this rank's block
  int replica_id = 0;                  // 0 writes; other replicas of the same block do not

  // The whole tensor on one rank.
  static ShardSpec full(const std::vector<int64_t>& shape);
  // A block of `parts` equal slices along dim `axis`, slice `index` (shape[axis] % parts must be 0).
  static ShardSpec split(const std::vector<int64_t>& shape, int axis, int parts, int index, int replica_id = 0);
  int64_t local_numel() const;
  std::string str() const;
};

// Checks that the replica-0 blocks of one tensor, gathered from every rank, tile its global shape exactly:
// no overlap, no gap. Returns "" when they do, else what is wrong.
std::string check_coverage(const std::vector<ShardSpec>& blocks);

}  // namespace polyllama
