// cuDNN fused attention graphs for causal GQA, built with the backend API the way cudnn-frontend lowers its SDPA
// node for cuDNN < 9.21 (matmul, scale, causal mask by generated indices, softmax with stats, matmul; the backward
// graph recomputes the probabilities from the stats). Our memory layout (B, T, heads, D) is given to cuDNN as
// (B, heads, T, D) with strides (T heads D, D, heads D, 1); K and V enter transposed by strides alone.
#include "cudnn_sdpa.hpp"

#include <cmath>
#include <limits>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "cudnn_graph.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"

namespace polyllama::cuda {
namespace {

using Dims = std::vector<int64_t>;

// A plan is specific to (B, H, KV, T, D) and the direction; the dtype is always bf16 (the only eligible one).
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, bool>;

std::string key_str(const Key& k) {
  const auto [B, H, KV, T, D, bwd] = k;
  return std::string(bwd ? "backward" : "forward") + " B=" + std::to_string(B) + " H=" + std::to_string(H) +
         " KV=" + std::to_string(KV) + " T=" + std::to_string(T) + " D=" + std::to_string(D) + " bf16";
}

constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// A built plan, the unique ids of its bound tensors, and the host scalars its variant packs point to (the map
// holding Entries never moves them).
struct Entry {
  dnn::Plan plan;
  std::vector<int64_t> uids;  // in the order the call binds pointers
  float scale = 0, neg_inf = 0, one = 1;  // neg_inf: the masked score of the graph's MaskStyle
  size_t stats_sum_off = 0, dq_acc_off = 0;  // backward: offsets of its own fp32 buffers in the workspace
  size_t workspace_bytes = 0;                // all it needs
};

// The views every graph uses.
struct Views {
  Dims q_dims, q_str, kv_dims, kv_str, kt_dims, kt_str, s_dims, s_str, st_str, r_dims, r_str;
  Views(int64_t B, int64_t H, int64_t KV, int64_t T, int64_t D)
      : q_dims{B, H, T, D}, q_str{T * H * D, D, H * D, 1},        // q, out, dout, dq: (B, T, H, D) memory
        kv_dims{B, KV, T, D}, kv_str{T * KV * D, D, KV * D, 1},  // k, v, dk, dv: (B, T, KV, D) memory
        kt_dims{B, KV, D, T}, kt_str{T * KV * D, D, 1, KV * D},  // K^T and V^T: the same memory, transposed
        s_dims{B, H, T, T}, s_str{H * T * T, T * T, T, 1},       // scores (virtual)
        st_str{H * T * T, T * T, 1, T},                          // scores transposed (virtual)
        r_dims{B, H, T, 1}, r_str{H * T, T, 1, 1} {}             // per-row stats: our (B, H, T) lse layout
};

constexpr cudnnDataType_t kBf = CUDNN_DATA_BFLOAT16, kF = CUDNN_DATA_FLOAT, kI = CUDNN_DATA_INT32,
                          kBool = CUDNN_DATA_BOOLEAN;

// The two ways cudnn-frontend has spelled the causal mask for the composite graphs; which one cuDNN 9.19's engines
// take has not been seen on a GPU yet, so the plan builder tries them in order (a refusal of the first is only
// logged when the second is refused too). Current frontend: index generation in the graph's fp32 compute type,
// -inf; frontend 1.x (cuDNN 9.0-9.9 era): int32 index math and the lowest float.
struct MaskStyle {
  const char* name;
  cudnnDataType_t index_prec;
  float masked;
};
constexpr MaskStyle kMaskStyles[] = {
    {"fp32 index math, -inf", CUDNN_DATA_FLOAT, -std::numeric_limits<float>::infinity()},
    {"int32 index math, lowest float", CUDNN_DATA_INT32, std::numeric_limits<float>::lowest()},
};

// scores -> scores with `masked` above the diagonal (query row t sees keys 0..t), as in the frontend's causal
// mask: generated row and column indices, row >= col, select.
int64_t causal_mask(dnn::GraphBuilder& g, const Views& v, const MaskStyle& style, int64_t scores,
                    int64_t masked_value) {
  const int64_t row = g.tensor("row index", kI, v.s_dims, v.s_str, true);
  g.pointwise("row index", CUDNN_POINTWISE_GEN_INDEX, style.index_prec, scores, -1, row, -1, 2);
  const int64_t col = g.tensor("column index", kI, v.s_dims, v.s_str, true);
  g.pointwise("column index", CUDNN_POINTWISE_GEN_INDEX, style.index_prec, scores, -1, col, -1, 3);
  const int64_t keep = g.tensor("row >= column", kBool, v.s_dims, v.s_str, true);
  g.pointwise("row >= column", CUDNN_POINTWISE_CMP_GE, kBool, row, col, keep);
  const int64_t masked = g.tensor("causal scores", kF, v.s_dims, v.s_str, true);
  // y = t ? x : b
  g.pointwise("causal select", CUDNN_POINTWISE_BINARY_SELECT, kF, scores, masked_value, masked, keep);
  return masked;
}

// Forward: O = softmax(mask(Q K^T scale)) V, Stats = max + log(sum exp) per row. Binds Q, K, V, O, Stats,
// scale, -inf.
Entry build_forward(cudnnHandle_t h, const Key& key, const MaskStyle& style, bool graph_only = false) {
  const auto [B, H, KV, T, D, bwd] = key;
  const Views v(B, H, KV, T, D);
  dnn::GraphBuilder g(h, "cuDNN SDPA " + key_str(key) + " (" + style.name + ")");
  Entry e;
  e.neg_inf = style.masked;
  const int64_t q = g.tensor("Q", kBf, v.q_dims, v.q_str, false);
  const int64_t kt = g.tensor("K^T", kBf, v.kt_dims, v.kt_str, false);
  const int64_t vv = g.tensor("V", kBf, v.kv_dims, v.kv_str, false);
  const int64_t o = g.tensor("O", kBf, v.q_dims, v.q_str, false);
  const int64_t stats = g.tensor("Stats", kF, v.r_dims, v.r_str, false);
  const int64_t scale = g.scalar("attention scale");
  const int64_t neg_inf = g.scalar("masked score");
  e.uids = {q, kt, vv, o, stats, scale, neg_inf};

  const int64_t s = g.tensor("S = Q K^T", kF, v.s_dims, v.s_str, true);
  g.matmul("Q K^T", q, kt, s);
  const int64_t ss = g.tensor("S * scale", kF, v.s_dims, v.s_str, true);
  g.pointwise("S * scale", CUDNN_POINTWISE_MUL, kF, s, scale, ss);
  const int64_t masked = causal_mask(g, v, style, ss, neg_inf);
  // Softmax with its statistics, as four reductions and pointwise steps the engines fuse.
  const int64_t mx = g.tensor("row max", kF, v.r_dims, v.r_str, true);
  g.reduction("row max", CUDNN_REDUCE_TENSOR_MAX, masked, mx);
  const int64_t sub = g.tensor("S - max", kF, v.s_dims, v.s_str, true);
  g.pointwise("S - max", CUDNN_POINTWISE_SUB, kF, masked, mx, sub);
  const int64_t ex = g.tensor("exp(S - max)", kF, v.s_dims, v.s_str, true);
  g.pointwise("exp(S - max)", CUDNN_POINTWISE_EXP, kF, sub, -1, ex);
  const int64_t z = g.tensor("row sum", kF, v.r_dims, v.r_str, true);
  g.reduction("row sum", CUDNN_REDUCE_TENSOR_ADD, ex, z);
  const int64_t lz = g.tensor("log(row sum)", kF, v.r_dims, v.r_str, true);
  g.pointwise("log(row sum)", CUDNN_POINTWISE_LOG, kF, z, -1, lz);
  g.pointwise("Stats = max + log(sum)", CUDNN_POINTWISE_ADD, kF, mx, lz, stats);
  // P enters the second matmul in the I/O type, as the engines require.
  const int64_t p = g.tensor("P", kBf, v.s_dims, v.s_str, true);
  g.pointwise("P = exp / sum", CUDNN_POINTWISE_DIV, kF, ex, z, p);
  g.matmul("P V", p, vv, o);
  if (graph_only) {
    g.check();
    return e;
  }
  e.plan = g.build();
  e.workspace_bytes = align_up(static_cast<size_t>(e.plan.workspace_bytes));
  return e;
}

// Backward (no dropout), as the frontend's composite backward: delta = rowsum(dO * O) into a workspace buffer,
// P recomputed as exp(mask(Q K^T scale) - Stats), dV = P^T dO, dS = P (dO V^T - delta) scale, dK = dS^T Q,
// dQ = dS K accumulated in fp32 in the workspace and converted. With GQA the full-head dK and dV are reduced
// over each group of H / KV query heads. Binds Q, K, V, O, dO, Stats, scale, -inf, 1, dQ, dK, dV, delta,
// dQ accumulator.
Entry build_backward(cudnnHandle_t h, const Key& key, const MaskStyle& style, bool graph_only = false) {
  const auto [B, H, KV, T, D, bwd] = key;
  const Views v(B, H, KV, T, D);
  dnn::GraphBuilder g(h, "cuDNN SDPA " + key_str(key) + " (" + style.name + ")");
  Entry e;
  e.neg_inf = style.masked;
  const Dims full_dims{B, H, T, D}, full_str{H * T * D, T * D, D, 1};  // (B, H, T, D) contiguous (virtual/fp32)
  const int64_t q = g.tensor("Q", kBf, v.q_dims, v.q_str, false);
  const int64_t kt = g.tensor("K^T", kBf, v.kt_dims, v.kt_str, false);
  const int64_t vt = g.tensor("V^T", kBf, v.kt_dims, v.kt_str, false);
  const int64_t o = g.tensor("O", kBf, v.q_dims, v.q_str, false);
  const int64_t d_o = g.tensor("dO", kBf, v.q_dims, v.q_str, false);
  const int64_t stats = g.tensor("Stats", kF, v.r_dims, v.r_str, false);
  const int64_t scale = g.scalar("attention scale");
  const int64_t neg_inf = g.scalar("masked score");
  const int64_t one = g.scalar("1");
  const int64_t dq = g.tensor("dQ", kBf, v.q_dims, v.q_str, false);
  const int64_t dk = g.tensor("dK", kBf, v.kv_dims, v.kv_str, false);
  const int64_t dv = g.tensor("dV", kBf, v.kv_dims, v.kv_str, false);
  const int64_t delta = g.tensor("delta = rowsum(dO * O)", kF, v.r_dims, v.r_str, false);
  const int64_t dq_acc = g.tensor("dQ accumulator", kF, full_dims, full_str, false);
  e.uids = {q, kt, vt, o, d_o, stats, scale, neg_inf, one, dq, dk, dv, delta, dq_acc};

  // delta (the frontend gives the product these strides; it is virtual, so they only describe the view)
  const int64_t doo = g.tensor("dO * O", kF, full_dims, {H * T * D, T * D, H * D, 1}, true);
  g.pointwise("dO * O", CUDNN_POINTWISE_MUL, kF, d_o, o, doo);
  const int64_t rs = g.tensor("rowsum(dO * O)", kF, v.r_dims, v.r_str, true);
  g.reduction("rowsum(dO * O)", CUDNN_REDUCE_TENSOR_ADD, doo, rs);
  g.pointwise("delta = rowsum * 1", CUDNN_POINTWISE_MUL, kF, rs, one, delta);

  // P from the saved statistics.
  const int64_t s = g.tensor("S = Q K^T", kF, v.s_dims, v.s_str, true);
  g.matmul("Q K^T", q, kt, s);
  const int64_t ss = g.tensor("S * scale", kF, v.s_dims, v.s_str, true);
  g.pointwise("S * scale", CUDNN_POINTWISE_MUL, kF, s, scale, ss);
  const int64_t sm = g.tensor("S - Stats", kF, v.s_dims, v.s_str, true);
  g.pointwise("S - Stats", CUDNN_POINTWISE_SUB, kF, ss, stats, sm);
  const int64_t masked = causal_mask(g, v, style, sm, neg_inf);
  const int64_t p = g.tensor("P", kF, v.s_dims, v.s_str, true);
  g.pointwise("P = exp(S - Stats)", CUDNN_POINTWISE_EXP, kF, masked, -1, p);

  // out = a b for a kv-head gradient: with GQA the product is per query head and summed over each group.
  auto group_matmul = [&](const char* what, const char* grad, int64_t a, int64_t b, int64_t out) {
    if (H == KV) return g.matmul(what, a, b, out);
    const int64_t full = g.tensor((std::string(grad) + " per query head").c_str(), kBf, full_dims, full_str, true);
    g.matmul(what, a, b, full);
    g.reduction((std::string(grad) + " over the group").c_str(), CUDNN_REDUCE_TENSOR_ADD, full, out);
  };
  // dV = P^T dO (summed over the query heads of each kv head).
  const int64_t pt = g.tensor("P^T", kBf, v.s_dims, v.st_str, true);
  g.reshape("P^T", p, pt);
  group_matmul("P^T dO", "dV", pt, d_o, dv);

  // dS = P (dO V^T - delta) scale.
  const int64_t dp = g.tensor("dP = dO V^T", kF, v.s_dims, v.s_str, true);
  g.matmul("dO V^T", d_o, vt, dp);
  const int64_t dpd = g.tensor("dP - delta", kF, v.s_dims, v.s_str, true);
  g.pointwise("dP - delta", CUDNN_POINTWISE_SUB, kF, dp, delta, dpd);
  const int64_t dsu = g.tensor("P (dP - delta)", kF, v.s_dims, v.s_str, true);
  g.pointwise("P (dP - delta)", CUDNN_POINTWISE_MUL, kF, dpd, p, dsu);
  const int64_t ds = g.tensor("dS", kF, v.s_dims, v.s_str, true);
  g.pointwise("dS = P (dP - delta) scale", CUDNN_POINTWISE_MUL, kF, dsu, scale, ds);

  // dK = dS^T Q (summed over the group).
  const int64_t dst = g.tensor("dS^T", kBf, v.s_dims, v.st_str, true);
  g.reshape("dS^T", ds, dst);
  group_matmul("dS^T Q", "dK", dst, q, dk);

  // dQ = dS K, through the fp32 accumulator. (The frontend leaves the reshaped K's type to the graph's
  // intermediate type, fp32; so does this graph, to stay on the pattern the engines were tested with.)
  const int64_t kk = g.tensor("K", kF, v.kv_dims, v.kv_str, true);
  g.reshape("K from K^T", kt, kk);
  g.matmul("dS K", ds, kk, dq_acc);
  g.pointwise("dQ = accumulator", CUDNN_POINTWISE_IDENTITY, kF, dq_acc, -1, dq);
  if (graph_only) {
    g.check();
    return e;
  }
  e.plan = g.build();
  e.stats_sum_off = align_up(static_cast<size_t>(e.plan.workspace_bytes));
  e.dq_acc_off = e.stats_sum_off + align_up(static_cast<size_t>(B * H * T) * sizeof(float));
  e.workspace_bytes = e.dq_acc_off + align_up(static_cast<size_t>(B * H * T * D) * sizeof(float));
  return e;
}

}  // namespace

std::string cudnn_version_string() {
  const size_t v = cudnnGetVersion();
  return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
}

struct CudnnSdpa::Impl {
  cudaStream_t stream = nullptr;
  cudnnHandle_t handle = nullptr;
  std::string handle_error;  // why there is no handle
  std::map<Key, Entry> plans;
  std::map<Key, std::string> refused;  // shape -> cuDNN's reason
  void* workspace = nullptr;
  size_t workspace_cap = 0;
  Counts counts;

  void refuse(const Key& k, const std::string& why) {
    if (!refused.emplace(k, why).second) return;
    log_warn("cuDNN SDPA refused the " + key_str(k) + " call: " + why +
             "; this shape runs the own attention kernels from now on (cuDNN's own log: CUDNN_LOGLEVEL_DBG=2 "
             "CUDNN_LOGDEST_DBG=stderr)");
  }

  // The workspace grows only here, while a plan is built; the stream is drained first because queued cuDNN
  // work may still read the old one.
  bool reserve(size_t bytes, const Key& k) {
    if (bytes <= workspace_cap) return true;
    cudaStreamSynchronize(stream);
    if (workspace) cudaFree(workspace);
    workspace = nullptr;
    workspace_cap = 0;
    if (cudaMalloc(&workspace, bytes) != cudaSuccess) {
      cudaGetLastError();
      workspace = nullptr;
      refuse(k, "cudaMalloc of its " + std::to_string(bytes >> 20) + " MiB workspace failed");
      return false;
    }
    workspace_cap = bytes;
    return true;
  }

  // The plan of this shape (built on first use), or nullptr when cuDNN refuses it.
  Entry* plan(const Key& k, float scale) {
    if (auto it = plans.find(k); it != plans.end()) return &it->second;
    if (refused.count(k)) return nullptr;
    if (!handle) {
      refuse(k, handle_error);
      return nullptr;
    }
    std::string why;
    for (const MaskStyle& style : kMaskStyles) {
      try {
        Entry e = std::get<5>(k) ? build_backward(handle, k, style) : build_forward(handle, k, style);
        e.scale = scale;
        if (!reserve(e.workspace_bytes, k)) return nullptr;
        log_info("cuDNN SDPA: " + key_str(k) + " plan built (causal mask: " + style.name + "; " + e.plan.engine +
                 ", workspace " + std::to_string(e.workspace_bytes >> 20) + " MiB)" +
                 (why.empty() ? "" : "; refused before: " + why));
        return &plans.emplace(k, std::move(e)).first->second;
      } catch (const dnn::Refused& r) {
        why += std::string(why.empty() ? "" : " | ") + r.what();
      }
    }
    refuse(k, why);
    return nullptr;
  }

  bool run(const Key& k, Entry& e, const std::vector<void*>& ptrs) {
    std::string why;
    if (dnn::execute(handle, e.plan, e.uids, ptrs, workspace, &why) == CUDNN_STATUS_SUCCESS) return true;
    plans.erase(k);  // a plan that does not run is refused from now on
    refuse(k, why);
    return false;
  }
};

CudnnSdpa::CudnnSdpa(cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
  impl_->stream = stream;
  cudnnStatus_t s = cudnnCreate(&impl_->handle);
  if (s == CUDNN_STATUS_SUCCESS) s = cudnnSetStream(impl_->handle, stream);
  if (s != CUDNN_STATUS_SUCCESS) {
    impl_->handle_error = "cudnnCreate/cudnnSetStream failed: " + dnn::status_text(s);
    if (impl_->handle) cudnnDestroy(impl_->handle);
    impl_->handle = nullptr;
    log_warn("cuDNN SDPA unavailable (" + impl_->handle_error + "); attention runs the own kernels");
  }
}

CudnnSdpa::~CudnnSdpa() {
  impl_->plans.clear();  // plans before the handle they were built with
  if (impl_->handle) cudnnDestroy(impl_->handle);
  if (impl_->workspace) cudaFree(impl_->workspace);
}

std::string CudnnSdpa::ineligible(const AttnArgs& a) {
  if (a.dtype != DType::bf16) return "dtype " + std::string(dtype_name(a.dtype)) + " (cuDNN path: bf16 only)";
  if (a.kv_start) return "spans (kv_start) are not expressed in the cuDNN graph";
  if (!(a.Tq == a.Tk && a.Tk == a.kv_len)) return "not plain causal self-attention (Tq, Tk, kv_len differ)";
  if (a.B <= 0 || a.Tq <= 0) return "empty";
  if (a.D % 8 != 0 || a.D > 256) return "head dim " + std::to_string(a.D) + " (cuDNN: a multiple of 8, <= 256)";
  if (!(aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && aligned16(a.out) && aligned16(a.lse)))
    return "a tensor not 16-byte aligned";
  return "";
}

bool CudnnSdpa::forward(const AttnArgs& a) {
  Impl& m = *impl_;
  const Key k{a.B, a.H, a.KV, a.Tq, a.D, false};
  Entry* e = ineligible(a).empty() ? m.plan(k, a.scale) : nullptr;
  if (!e || !m.run(k, *e,
                   {const_cast<void*>(a.q), const_cast<void*>(a.k), const_cast<void*>(a.v), a.out, a.lse, &e->scale,
                    &e->neg_inf})) {
    ++m.counts.fwd_other;
    return false;
  }
  ++m.counts.fwd;
  return true;
}

bool CudnnSdpa::backward(const AttnArgs& a, const void* dout, void* dq, void* dk, void* dv) {
  Impl& m = *impl_;
  const Key k{a.B, a.H, a.KV, a.Tq, a.D, true};
  const bool ok = ineligible(a).empty() && aligned16(dout) && aligned16(dq) && aligned16(dk) && aligned16(dv);
  Entry* e = ok ? m.plan(k, a.scale) : nullptr;
  if (e && cudnnGetVersion() < 90600) {  // older cuDNN expects the dQ accumulator zeroed by the caller
    const size_t acc = static_cast<size_t>(a.B * a.H * a.Tq * a.D) * sizeof(float);
    if (cudaMemsetAsync(static_cast<char*>(m.workspace) + e->dq_acc_off, 0, acc, m.stream) != cudaSuccess)
      fail_runtime("cudaMemsetAsync of the cuDNN dQ accumulator failed", __FILE__, __LINE__);
  }
  char* ws = static_cast<char*>(m.workspace);
  if (!e || !m.run(k, *e,
                   {const_cast<void*>(a.q), const_cast<void*>(a.k), const_cast<void*>(a.v), a.out,
                    const_cast<void*>(dout), a.lse, &e->scale, &e->neg_inf, &e->one, dq, dk, dv,
                    ws + e->stats_sum_off, ws + e->dq_acc_off})) {
    ++m.counts.bwd_other;
    return false;
  }
  ++m.counts.bwd;
  return true;
}

std::string CudnnSdpa::check_graph(int64_t B, int64_t H, int64_t KV, int64_t T, int64_t D, bool backward) {
  const Key k{B, H, KV, T, D, backward};
  std::string why;
  for (const MaskStyle& style : kMaskStyles) {
    try {
      backward ? build_backward(nullptr, k, style, true) : build_forward(nullptr, k, style, true);
    } catch (const dnn::Refused& r) {
      why += std::string(why.empty() ? "" : " | ") + r.what();
    }
  }
  return why;
}

CudnnSdpa::Counts CudnnSdpa::counts() const { return impl_->counts; }

std::string CudnnSdpa::summary() const {
  const Counts& c = impl_->counts;
  std::string s = "cuDNN " + cudnn_version_string() + " SDPA ran forward " + std::to_string(c.fwd) + ", backward " +
                  std::to_string(c.bwd) + " calls; own kernels ran forward " + std::to_string(c.fwd_other) +
                  ", backward " + std::to_string(c.bwd_other);
  int n = 0;
  for (const auto& [k, why] : impl_->refused) {
    if (n++ == 2) {
      s += "; ...";
      break;
    }
    s += "; refused " + key_str(k) + ": " + why;
  }
  return s;
}

}  // namespace polyllama::cuda
