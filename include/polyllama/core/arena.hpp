#pragma once
// One aligned allocation carved into tensors. Plan all sizes first (reserve), then allocate once: nothing in
// the training step allocates. With a backend the allocation is that backend's memory (a GPU's), else host memory.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "polyllama/core/backend.hpp"
#include "polyllama/core/tensor.hpp"

namespace polyllama {

class Arena {
 public:
  Arena(std::string name, DType dtype, Backend* backend = nullptr)
      : name_(std::move(name)), dtype_(dtype), be_(backend) {}
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Returns a handle; the tensor is valid after allocate().
  int reserve(std::initializer_list<int64_t> dims);
  // The elements a tensor of n elements takes in an arena: each starts on a 16-element boundary (whole cache
  // lines), so n rounded up to a multiple of 16. What `plan` sizes arenas with.
  static int64_t padded_elems(int64_t n) { return (n + 15) / 16 * 16; }
  void allocate(bool zero = true);
  bool allocated() const { return base_ != nullptr; }
  Tensor get(int handle) const;
  // The whole arena as one flat tensor (for passes over every parameter at once).
  Tensor flat() const { return Tensor(base_.get(), dtype_, {total_elems_}); }
  size_t bytes() const { return static_cast<size_t>(total_elems_) * dtype_size(dtype_); }
  const std::string& name() const { return name_; }
  DType dtype() const { return dtype_; }

 private:
  struct Slot {
    std::array<int64_t, 4> shape;
    int ndim;
    int64_t offset;  // elements
  };
  std::string name_;
  DType dtype_;
  Backend* be_;
  std::vector<Slot> slots_;
  int64_t total_elems_ = 0;
  std::unique_ptr<char, std::function<void(char*)>> base_;
};

}  // namespace polyllama
