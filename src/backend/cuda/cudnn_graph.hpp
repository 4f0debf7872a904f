#pragma once
// A thin layer over cuDNN's backend (graph) API, enough to describe a graph of tensors and operations, finalize
// it, and turn the heuristics' first engine that accepts it into an execution plan. Every call is checked; a
// failure throws Refused with the descriptor, the attribute and cuDNN's own message, because a graph cuDNN
// rejects is an answer ("not for this shape"), not a crash: the caller falls back to its own kernels.
// Host code only; compiled only where cuDNN was found (POLYLLAMA_HAVE_CUDNN).
#include <cudnn.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace polyllama::cuda::dnn {

struct Refused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "CUDNN_STATUS_NOT_SUPPORTED (3000): <cudnnGetLastErrorString>".
std::string status_text(cudnnStatus_t s);

// One owned backend descriptor; `what` names it in every error ("tensor 'S'", "plan of sdpa_fwd").
class Desc {
 public:
  Desc() = default;
  Desc(cudnnBackendDescriptorType_t type, std::string what);
  ~Desc();
  Desc(Desc&& o) noexcept;
  Desc& operator=(Desc&& o) noexcept;
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;

  cudnnBackendDescriptor_t get() const { return d_; }
  const std::string& what() const { return what_; }
  // attr_name: the attribute's enum name as written (the PL_DNN_SET macro passes it).
  void set(cudnnBackendAttributeName_t attr, const char* attr_name, cudnnBackendAttributeType_t type, int64_t count,
           const void* values);
  void finalize();

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
  std::string what_;
};
#define PL_DNN_SET(desc, attr, type, count, values) (desc).set(attr, #attr, type, count, values)

// An execution plan and what it needs at run time: the workspace size and the descriptors it was built from
// (kept alive for the plan's lifetime), plus variant packs cached per set of data pointers (a training step
// passes the same buffers every step, so the packs are built in the first step and reused).
struct Plan {
  Desc plan;
  int64_t workspace_bytes = 0;
  std::string engine;  // "engine 7 (of 12 heuristic results; 2 refused)" for the logs
  std::vector<Desc> keep;
  std::map<std::vector<void*>, Desc> packs;
};

// Builds one operation graph. Tensors are named and get their unique id from the order of creation; operations
// refer to them by id. Dims and strides are cuDNN's 4-D (B, heads, rows, cols) view of the caller's memory.
class GraphBuilder {
 public:
  GraphBuilder(cudnnHandle_t handle, std::string name) : handle_(handle), name_(std::move(name)) {}

  // Returns the tensor's unique id. by_value: a host scalar passed in the variant pack (dims 1,1,1,1).
  int64_t tensor(const char* name, cudnnDataType_t dtype, const std::vector<int64_t>& dims,
                 const std::vector<int64_t>& strides, bool is_virtual, bool by_value = false);
  int64_t scalar(const char* name) { return tensor(name, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true); }
  // c = a b over the last two dims, batched (and broadcast) over the first two; fp32 accumulation.
  void matmul(const char* name, int64_t a, int64_t b, int64_t c);
  // y = mode(x[, b[, t]]); prec is the math precision; axis only for GEN_INDEX.
  void pointwise(const char* name, cudnnPointwiseMode_t mode, cudnnDataType_t prec, int64_t x, int64_t b, int64_t y,
                 int64_t t = -1, int64_t axis = -1);
  void reduction(const char* name, cudnnReduceTensorOp_t op, int64_t x, int64_t y);
  void reshape(const char* name, int64_t x, int64_t y);

  // Finalizes the graph, asks the heuristics (mode A, then the fallback list) and returns the first engine
  // configuration that finalizes as a plan. Throws Refused naming each step that failed.
  Plan build();
  // Finalizes the operation graph only (no handle needed: every tensor and operation descriptor is checked
  // by cuDNN, no engine is asked). For checks on machines without a GPU.
  void check();

 private:
  Desc finalize_graph();
  const Desc& t(int64_t uid) const;
  Desc& add_op(Desc op);

  cudnnHandle_t handle_;
  std::string name_;
  std::map<int64_t, Desc> tensors_;
  std::map<int64_t, std::string> names_;
  std::vector<Desc> ops_;       // operations, in creation order
  std::vector<Desc> op_descs_;  // their pointwise / matmul / reduction descriptors
};

// Runs `plan` on the handle's stream with these (uid, pointer) bindings; by-value scalars point to host floats.
// Returns the status (the caller decides whether a failure is a refusal); the variant pack is cached per pointer
// set, at most 64 per plan (then the cache starts over).
cudnnStatus_t execute(cudnnHandle_t handle, Plan& plan, const std::vector<int64_t>& uids,
                      const std::vector<void*>& ptrs, void* workspace, std::string* why);

}  // namespace polyllama::cuda::dnn
