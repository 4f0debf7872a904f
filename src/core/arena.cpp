#include "polyllama/core/arena.hpp"

#include <cstdlib>
#include <cstring>

namespace polyllama {

int Arena::reserve(std::initializer_list<int64_t> dims) {
  PL_CHECK(!base_, "arena " + name_ + " already allocated");
  Slot s{{0, 0, 0, 0}, 0, total_elems_};
  int64_t n = 1;
  for (int64_t d : dims) {
    s.shape[static_cast<size_t>(s.ndim++)] = d;
    n *= d;
  }
  total_elems_ += padded_elems(n);  // 64-byte alignment for fp32, 128 for fp64: whole cache lines per tensor
  slots_.push_back(s);
  return static_cast<int>(slots_.size()) - 1;
}

void Arena::allocate(bool zero) {
  PL_CHECK(!base_, "arena " + name_ + " already allocated");
  const size_t nbytes = bytes() == 0 ? 64 : (bytes() + 63) / 64 * 64;
  if (be_ && !be_->host_memory()) {
    Backend* be = be_;
    base_ = {static_cast<char*>(be->device_alloc(nbytes)), [be](char* p) { be->device_free(p); }};
    if (zero) be->zero(Tensor(base_.get(), dtype_, {static_cast<int64_t>(nbytes / dtype_size(dtype_))}));
    return;
  }
  void* p = std::aligned_alloc(64, nbytes);
  if (!p) fail_runtime("out of memory allocating " + std::to_string(nbytes >> 20) + " MiB for " + name_, __FILE__, __LINE__);
  if (zero) std::memset(p, 0, nbytes);
  base_ = {static_cast<char*>(p), [](char* q) { std::free(q); }};
}

Tensor Arena::get(int handle) const {
  PL_CHECK(base_, "arena " + name_ + " used before allocate()");
  const Slot& s = slots_.at(static_cast<size_t>(handle));
  Tensor t;
  t.data = base_.get() + static_cast<size_t>(s.offset) * dtype_size(dtype_);
  t.dtype = dtype_;
  t.ndim = s.ndim;
  t.shape = s.shape;
  return t;
}

}  // namespace polyllama
