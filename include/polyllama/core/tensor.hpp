#pragma once
// A non-owning, dense, row-major view: pointer, dtype and up to 4 dims. Storage is owned by arenas
// (core/arena.hpp) that size everything once before the training loop.
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "polyllama/core/error.hpp"

namespace polyllama {

// bf16 is a storage and compute type of accelerator backends (the CPU backend computes in f32 and f64).
enum class DType : int { f32 = 0, f64 = 1, bf16 = 2 };

inline size_t dtype_size(DType t) { return t == DType::f64 ? 8 : t == DType::bf16 ? 2 : 4; }
const char* dtype_name(DType t);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  int ndim = 0;
  std::array<int64_t, 4> shape{0, 0, 0, 0};

  Tensor() = default;
  Tensor(void* d, DType t, std::initializer_list<int64_t> dims);

  int64_t numel() const;
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const { return shape[static_cast<size_t>(i < 0 ? ndim + i : i)]; }
  // Rows x columns when the last dim is the fast one: (numel / last, last).
  int64_t rows() const { return numel() / dim(-1); }
  int64_t cols() const { return dim(-1); }
  bool empty() const { return data == nullptr; }
  std::string shape_str() const;

  template <typename T> T* ptr() const {
    PL_CHECK(dtype == dtype_of<T>(), std::string("tensor is ") + dtype_name(dtype));
    return static_cast<T*>(data);
  }
  // The same storage seen with other dims (numel must match).
  Tensor view(std::initializer_list<int64_t> dims) const;
  // Rows [row0, row0 + n) of the view taken as (rows, cols).
  Tensor slice_rows(int64_t row0, int64_t n) const;
};

}  // namespace polyllama
