#include "polyllama/parallel/tensor_parallel.hpp"

namespace polyllama {

TensorParallel::TensorParallel(const ParallelContext* parallel) {
  if (!parallel || parallel->dims().tp == 1) return;
  comm_ = &parallel->tensor_tp();
  size_ = parallel->dims().tp;
  rank_ = parallel->tp_rank();
}

void TensorParallel::copy_to_tp_backward(Tensor dx) const {
  if (comm_) comm_->all_reduce(dx);
}

void TensorParallel::reduce_from_tp_forward(Tensor y) const {
  if (comm_) comm_->all_reduce(y);
}

void TensorParallel::residual_into(Backend& be, Tensor dst, Tensor residual) const {
  if (rank_ != 0)
    be.zero(dst);
  else if (dst.data != residual.data)
    be.copy(dst, residual);
}

}  // namespace polyllama
