#include "cudnn_graph.hpp"

#include <algorithm>
#include <utility>

namespace polyllama::cuda::dnn {

std::string status_text(cudnnStatus_t s) {
  char last[1024] = {0};
  cudnnGetLastErrorString(last, sizeof(last));
  std::string r = std::string(cudnnGetErrorString(s)) + " (" + std::to_string(static_cast<int>(s)) + ")";
  if (last[0]) r += ": " + std::string(last);
  return r;
}

Desc::Desc(cudnnBackendDescriptorType_t type, std::string what) : what_(std::move(what)) {
  const cudnnStatus_t s = cudnnBackendCreateDescriptor(type, &d_);
  if (s != CUDNN_STATUS_SUCCESS) {
    d_ = nullptr;
    throw Refused("cudnnBackendCreateDescriptor(" + what_ + ", type " + std::to_string(static_cast<int>(type)) +
                  "): " + status_text(s));
  }
}

Desc::~Desc() {
  if (d_) cudnnBackendDestroyDescriptor(d_);
}

Desc::Desc(Desc&& o) noexcept : d_(std::exchange(o.d_, nullptr)), what_(std::move(o.what_)) {}

Desc& Desc::operator=(Desc&& o) noexcept {
  if (this != &o) {
    if (d_) cudnnBackendDestroyDescriptor(d_);
    d_ = std::exchange(o.d_, nullptr);
    what_ = std::move(o.what_);
  }
  return *this;
}

void Desc::set(cudnnBackendAttributeName_t attr, const char* attr_name, cudnnBackendAttributeType_t type,
               int64_t count, const void* values) {
  const cudnnStatus_t s = cudnnBackendSetAttribute(d_, attr, type, count, values);
  if (s != CUDNN_STATUS_SUCCESS)
    throw Refused("cudnnBackendSetAttribute(" + what_ + ", " + attr_name + "): " + status_text(s));
}

void Desc::finalize() {
  const cudnnStatus_t s = cudnnBackendFinalize(d_);
  if (s != CUDNN_STATUS_SUCCESS) throw Refused("cudnnBackendFinalize(" + what_ + "): " + status_text(s));
}

int64_t GraphBuilder::tensor(const char* name, cudnnDataType_t dtype, const std::vector<int64_t>& dims,
                             const std::vector<int64_t>& strides, bool is_virtual, bool by_value) {
  const auto uid = static_cast<int64_t>(tensors_.size()) + 1;  // 0 is not a valid id
  Desc d(CUDNN_BACKEND_TENSOR_DESCRIPTOR, name_ + " tensor '" + name + "'");
  const int64_t align = 16;
  const auto n = static_cast<int64_t>(dims.size());
  const bool virt = is_virtual, val = by_value;
  PL_DNN_SET(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dtype);
  PL_DNN_SET(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, n, dims.data());
  PL_DNN_SET(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, static_cast<int64_t>(strides.size()), strides.data());
  PL_DNN_SET(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  PL_DNN_SET(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
  PL_DNN_SET(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt);
  if (by_value) PL_DNN_SET(d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &val);
  d.finalize();
  tensors_.emplace(uid, std::move(d));
  names_.emplace(uid, name);
  return uid;
}

const Desc& GraphBuilder::t(int64_t uid) const {
  const auto it = tensors_.find(uid);
  if (it == tensors_.end()) throw Refused(name_ + ": no tensor with id " + std::to_string(uid) + " (a bug here)");
  return it->second;
}

Desc& GraphBuilder::add_op(Desc op) {
  op.finalize();
  ops_.push_back(std::move(op));
  return ops_.back();
}

void GraphBuilder::matmul(const char* name, int64_t a, int64_t b, int64_t c) {
  Desc mm(CUDNN_BACKEND_MATMUL_DESCRIPTOR, name_ + " matmul descriptor of '" + name + "'");
  const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
  PL_DNN_SET(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
  mm.finalize();
  Desc op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, name_ + " matmul '" + name + "'");
  cudnnBackendDescriptor_t da = t(a).get(), db = t(b).get(), dc = t(c).get(), dm = mm.get();
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &da);
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &db);
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dc);
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dm);
  add_op(std::move(op));
  op_descs_.push_back(std::move(mm));
}

void GraphBuilder::pointwise(const char* name, cudnnPointwiseMode_t mode, cudnnDataType_t prec, int64_t x, int64_t b,
                             int64_t y, int64_t tc, int64_t axis) {
  Desc pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, name_ + " pointwise descriptor of '" + name + "'");
  PL_DNN_SET(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  PL_DNN_SET(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
  if (axis >= 0) PL_DNN_SET(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
  pw.finalize();
  Desc op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, name_ + " pointwise '" + name + "'");
  cudnnBackendDescriptor_t dp = pw.get(), dx = t(x).get(), dy = t(y).get();
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dp);
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dx);
  if (b >= 0) {
    cudnnBackendDescriptor_t db = t(b).get();
    PL_DNN_SET(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &db);
  }
  if (tc >= 0) {
    cudnnBackendDescriptor_t dt = t(tc).get();
    PL_DNN_SET(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dt);
  }
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dy);
  add_op(std::move(op));
  op_descs_.push_back(std::move(pw));
}

void GraphBuilder::reduction(const char* name, cudnnReduceTensorOp_t rop, int64_t x, int64_t y) {
  Desc red(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, name_ + " reduction descriptor of '" + name + "'");
  const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
  PL_DNN_SET(red, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &rop);
  PL_DNN_SET(red, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
  red.finalize();
  Desc op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, name_ + " reduction '" + name + "'");
  cudnnBackendDescriptor_t dr = red.get(), dx = t(x).get(), dy = t(y).get();
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dx);
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dy);
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dr);
  add_op(std::move(op));
  op_descs_.push_back(std::move(red));
}

void GraphBuilder::reshape(const char* name, int64_t x, int64_t y) {
  Desc op(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, name_ + " reshape '" + name + "'");
  cudnnBackendDescriptor_t dx = t(x).get(), dy = t(y).get();
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dx);
  PL_DNN_SET(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dy);
  add_op(std::move(op));
}

namespace {

// The engine configurations the heuristics list for `graph` in `mode` (possibly none).
std::vector<Desc> engine_configs(const Desc& graph, cudnnBackendHeurMode_t mode, const std::string& name) {
  const std::string mode_name = mode == CUDNN_HEUR_MODE_A ? "CUDNN_HEUR_MODE_A" : "CUDNN_HEUR_MODE_FALLBACK";
  Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, name + " heuristics (" + mode_name + ")");
  cudnnBackendDescriptor_t g = graph.get();
  PL_DNN_SET(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g);
  PL_DNN_SET(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  heur.finalize();
  int64_t count = 0;
  cudnnStatus_t s = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                             0, &count, nullptr);
  if (s != CUDNN_STATUS_SUCCESS)
    throw Refused("cudnnBackendGetAttribute(" + heur.what() + ", CUDNN_ATTR_ENGINEHEUR_RESULTS, count): " +
                  status_text(s));
  std::vector<Desc> cfgs;
  if (count <= 0) return cfgs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < count; ++i) {
    cfgs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, name + " engine config " + std::to_string(i));
    raw.push_back(cfgs.back().get());
  }
  int64_t got = 0;
  s = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                               raw.data());
  if (s != CUDNN_STATUS_SUCCESS)
    throw Refused("cudnnBackendGetAttribute(" + heur.what() + ", CUDNN_ATTR_ENGINEHEUR_RESULTS): " + status_text(s));
  cfgs.resize(static_cast<size_t>(std::max<int64_t>(0, std::min(got, count))));
  return cfgs;
}

}  // namespace

Desc GraphBuilder::finalize_graph() {
  Desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, name_ + " operation graph");
  std::vector<cudnnBackendDescriptor_t> ops;
  for (const Desc& op : ops_) ops.push_back(op.get());
  if (handle_) PL_DNN_SET(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle_);
  PL_DNN_SET(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(ops.size()),
             ops.data());
  graph.finalize();
  return graph;
}

void GraphBuilder::check() { finalize_graph(); }

Plan GraphBuilder::build() {
  if (!handle_) throw Refused(name_ + ": no cuDNN handle");
  Desc graph = finalize_graph();

  std::string tried;  // why each engine configuration was turned down, for the refusal message
  int refused = 0, listed = 0;
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    std::vector<Desc> cfgs;
    try {
      cfgs = engine_configs(graph, mode, name_);
    } catch (const Refused& e) {  // the other mode may still list engines
      tried += std::string(tried.empty() ? "" : "; ") + e.what();
      continue;
    }
    listed += static_cast<int>(cfgs.size());
    for (size_t i = 0; i < cfgs.size(); ++i) {
      Plan p;
      try {
        p.plan = Desc(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, name_ + " execution plan");
        cudnnBackendDescriptor_t cfg = cfgs[i].get();
        PL_DNN_SET(p.plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle_);
        PL_DNN_SET(p.plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg);
        p.plan.finalize();
      } catch (const Refused& e) {
        ++refused;
        if (refused <= 3) tried += std::string(tried.empty() ? "" : "; ") + e.what();
        continue;
      }
      int64_t n = 0;
      const cudnnStatus_t s = cudnnBackendGetAttribute(p.plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                       CUDNN_TYPE_INT64, 1, &n, &p.workspace_bytes);
      if (s != CUDNN_STATUS_SUCCESS)
        throw Refused("cudnnBackendGetAttribute(" + p.plan.what() + ", CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE): " +
                      status_text(s));
      p.engine = std::string(mode == CUDNN_HEUR_MODE_A ? "heuristics A" : "fallback list") + " result " +
                 std::to_string(i) + " (" + std::to_string(refused) + " earlier configurations refused)";
      p.keep.push_back(std::move(graph));
      for (Desc& c : cfgs) p.keep.push_back(std::move(c));
      for (auto& [uid, d] : tensors_) p.keep.push_back(std::move(d));
      for (Desc& d : ops_) p.keep.push_back(std::move(d));
      for (Desc& d : op_descs_) p.keep.push_back(std::move(d));
      tensors_.clear();
      ops_.clear();
      op_descs_.clear();
      return p;
    }
  }
  throw Refused(name_ + ": no engine accepts the graph (" + std::to_string(listed) + " configurations listed, " +
                std::to_string(refused) + " refused" + (tried.empty() ? "" : ": " + tried) + ")");
}

cudnnStatus_t execute(cudnnHandle_t handle, Plan& plan, const std::vector<int64_t>& uids,
                      const std::vector<void*>& ptrs, void* workspace, std::string* why) {
  std::vector<void*> key = ptrs;
  key.push_back(workspace);
  auto it = plan.packs.find(key);
  if (it == plan.packs.end()) {
    if (plan.packs.size() >= 64) plan.packs.clear();  // e.g. a caller cycling through many buffers
    try {
      Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
      PL_DNN_SET(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, static_cast<int64_t>(uids.size()),
                 uids.data());
      PL_DNN_SET(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<int64_t>(ptrs.size()),
                 ptrs.data());
      PL_DNN_SET(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
      pack.finalize();
      it = plan.packs.emplace(std::move(key), std::move(pack)).first;
    } catch (const Refused& e) {
      if (why) *why = e.what();
      return CUDNN_STATUS_BAD_PARAM;
    }
  }
  const cudnnStatus_t s = cudnnBackendExecute(handle, plan.plan.get(), it->second.get());
  if (s != CUDNN_STATUS_SUCCESS && why) *why = "cudnnBackendExecute(" + plan.engine + "): " + status_text(s);
  return s;
}

}  // namespace polyllama::cuda::dnn
