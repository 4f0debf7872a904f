#include "polyllama/core/tensor.hpp"

namespace polyllama {

const char* dtype_name(DType t) { return t == DType::f64 ? "f64" : t == DType::bf16 ? "bf16" : "f32"; }

Tensor::Tensor(void* d, DType t, std::initializer_list<int64_t> dims) : data(d), dtype(t) {
  PL_CHECK(dims.size() >= 1 && dims.size() <= 4, "tensor rank must be 1..4");
  for (int64_t v : dims) shape[static_cast<size_t>(ndim++)] = v;
}

int64_t Tensor::numel() const {
  int64_t n = ndim > 0 ? 1 : 0;
  for (int i = 0; i < ndim; ++i) n *= shape[static_cast<size_t>(i)];
  return n;
}

std::string Tensor::shape_str() const {
  std::string s = "(";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[static_cast<size_t>(i)]);
  return s + ")";
}

Tensor Tensor::view(std::initializer_list<int64_t> dims) const {
  Tensor t(data, dtype, dims);
  PL_CHECK(t.numel() == numel(), "view " + t.shape_str() + " of " + shape_str());
  return t;
}

Tensor Tensor::slice_rows(int64_t row0, int64_t n) const {
  PL_CHECK(row0 >= 0 && row0 + n <= rows(), "row slice out of range of " + shape_str());
  auto* base = static_cast<char*>(data) + static_cast<size_t>(row0 * cols()) * dtype_size(dtype);
  return Tensor(base, dtype, {n, cols()});
}

}  // namespace polyllama
