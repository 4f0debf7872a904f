#pragma once
// Megatron's two paired tensor-parallel collectives (megatron/core/tensor_parallel/mappings.py), named for what
// they do in each direction, over the tp group's tensor communicator (ParallelContext::tensor_tp(): NCCL for a GPU
// backend, MPI otherwise). The model code calls both halves at the places they belong, so each forward collective
// can be read next to its backward partner; without tensor parallelism every call is a no-op.
//
//   f, copy_to_tp:      forward identity   / backward all-reduce. The input of a column-parallel layer (q/k/v,
//                       gate/up, the vocab-parallel LM head): every rank reads the whole input, so each rank's
//                       gradient of it is a partial sum over its slice of the outputs.
//   g, reduce_from_tp:  forward all-reduce / backward identity. The output of a row-parallel layer (o_proj,
//                       down_proj) and of the vocab-parallel embedding: each rank's output is a partial sum, and
//                       every rank receives the whole gradient of the sum.
#include "polyllama/core/backend.hpp"
#include "polyllama/parallel/parallel.hpp"

namespace polyllama {

class TensorParallel {
 public:
  // parallel == nullptr or tp == 1: one rank, every collective a no-op.
  explicit TensorParallel(const ParallelContext* parallel = nullptr);
  int size() const { return size_; }
  int rank() const { return rank_; }

  void copy_to_tp_forward(Tensor) const {}
  void copy_to_tp_backward(Tensor dx) const;  // dx = sum over tp ranks of dx (in place)
  void reduce_from_tp_forward(Tensor y) const;  // y = sum over tp ranks of y (in place)
  void reduce_from_tp_backward(Tensor) const {}

  // The residual enters a row-parallel sum once: dst = residual on tp rank 0, zeros on the others; each rank then
  // adds its part (beta = 1) and reduce_from_tp_forward forms residual + the sum of the parts. dst may be the
  // residual itself (in-place decoding): rank 0 then keeps it as it is.
  void residual_into(Backend& be, Tensor dst, Tensor residual) const;

 private:
  Communicator* comm_ = nullptr;
  int size_ = 1, rank_ = 0;
};

}  // namespace polyllama
