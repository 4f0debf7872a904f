#include "polyllama/backend/cuda/cuda_backend.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "attention.cuh"
#include "context.hpp"
#include "cross_entropy.cuh"
#include "elementwise.cuh"
#include "embedding.cuh"
#include "matmul.hpp"
#include "rmsnorm.cuh"
#include "rope.cuh"
#include "swiglu.cuh"

namespace polyllama {

namespace {

std::string shapes(std::initializer_list<Tensor> ts) {
  std::string s;
  for (const Tensor& t : ts) s += (s.empty() ? "" : ", ") + t.shape_str() + " " + dtype_name(t.dtype);
  return s;
}

void want(const Tensor& t, DType d, const char* op, const char* what) {
  PL_CHECK(t.dtype == d, std::string(op) + ": " + what + " is " + dtype_name(t.dtype) + ", expected " + dtype_name(d));
}

// The activation dtype of an op: f32 or bf16.
DType act_dtype(const Tensor& t, const char* op) {
  PL_CHECK(t.dtype == DType::f32 || t.dtype == DType::bf16,
           std::string(op) + ": CUDA computes f32 and bf16, got " + dtype_name(t.dtype));
  return t.dtype;
}

void same_numel(const Tensor& a, const Tensor& b, const char* what) {
  PL_CHECK(a.numel() == b.numel(), std::string(what) + ": " + a.shape_str() + " vs " + b.shape_str());
}

}  // namespace

bool cuda_device_usable(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why)
      *why = e != cudaSuccess ? "no usable GPU: cudaGetDeviceCount returned " + std::to_string(static_cast<int>(e)) +
                                    " (" + cudaGetErrorString(e) + ")"
                              : "no usable GPU: cudaGetDeviceCount found 0 devices";
    cudaGetLastError();  // clear the sticky-free error state for later calls
    return false;
  }
  return true;
}

int cuda_visible_devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

double bf16_peak_tflops(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H200")) return 989;
  if (has("H100") && (has("PCIe") || has("PCIE"))) return 756;
  if (has("H100")) return 989;  // SXM (HBM3)
  if (has("A100")) return 312;
  return 0;
}

CudaBackend::CudaBackend(int device) {
  std::string why;
  if (!cuda_device_usable(&why)) fail_input("CUDA backend: " + why);
  ctx_ = std::make_unique<Context>(device);
}

CudaBackend::~CudaBackend() = default;

bool CudaBackend::supports(Op op, DType dtype) const {
  return op < Op::count && (dtype == DType::f32 || dtype == DType::bf16);
}

void* CudaBackend::device_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 256));
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail_runtime("out of GPU memory allocating " + std::to_string(bytes >> 20) + " MiB (" +
                     std::to_string(free_b >> 20) + " of " + std::to_string(total_b >> 20) +
                     " MiB free); use a smaller --micro-batch or --seq-len",
                 __FILE__, __LINE__);
  }
  return p;  // cudaMalloc aligns to at least 256 bytes
}

void CudaBackend::device_free(void* p) {
  if (p) cudaFree(p);  // implicitly synchronises; freeing during teardown must not throw
}

void CudaBackend::upload(Tensor dst, const void* host_src) {
  PL_CUDA_CHECK(cudaMemcpyAsync(dst.data, host_src, dst.bytes(), cudaMemcpyHostToDevice, ctx_->stream));
  PL_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
}

void CudaBackend::download(void* host_dst, Tensor src) {
  PL_CUDA_CHECK(cudaMemcpyAsync(host_dst, src.data, src.bytes(), cudaMemcpyDeviceToHost, ctx_->stream));
  PL_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
}

void* CudaBackend::stream_handle() const { return ctx_->stream; }
int CudaBackend::device() const { return ctx_->device; }

void CudaBackend::synchronize() { PL_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream)); }

void CudaBackend::matmul(Tensor c, Tensor a, Tensor b, bool ta, bool tb, double alpha, double beta) {
  const DType d = act_dtype(a, "matmul");
  want(b, d, "matmul", "b");
  PL_CHECK(c.dtype == d || c.dtype == DType::f32, "matmul: c is " + std::string(dtype_name(c.dtype)) +
                                                      " for " + dtype_name(d) + " inputs (expected that or f32)");
  const int64_t M = ta ? a.cols() : a.rows(), K = ta ? a.rows() : a.cols();
  const int64_t Kb = tb ? b.cols() : b.rows(), N = tb ? b.rows() : b.cols();
  PL_CHECK(K == Kb && c.rows() == M && c.cols() == N,
           "matmul shapes " + a.shape_str() + (ta ? "^T" : "") + " @ " + b.shape_str() + (tb ? "^T" : "") + " -> " +
               c.shape_str());
  cuda::gemm(*ctx_, {a.data, b.data, c.data, M, N, K, ta, tb, d, c.dtype, alpha, beta});
}

void CudaBackend::rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor w, double eps) {
  const DType d = act_dtype(x, "rmsnorm_forward");
  want(y, d, "rmsnorm_forward", "y");
  want(w, d, "rmsnorm_forward", "w");
  want(rstd, DType::f32, "rmsnorm_forward", "rstd");
  same_numel(y, x, "rmsnorm y/x");
  PL_CHECK(w.numel() == x.cols() && rstd.numel() == x.rows(), "rmsnorm w/rstd: " + shapes({x, w, rstd}));
  cuda::rmsnorm_forward(*ctx_, d, y.data, static_cast<float*>(rstd.data), x.data, w.data, x.rows(), x.cols(), eps);
}

void CudaBackend::rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w, Tensor rstd) {
  const DType d = act_dtype(x, "rmsnorm_backward");
  want(dx, d, "rmsnorm_backward", "dx");
  want(dy, d, "rmsnorm_backward", "dy");
  want(w, d, "rmsnorm_backward", "w");
  want(dw, DType::f32, "rmsnorm_backward", "dw");
  want(rstd, DType::f32, "rmsnorm_backward", "rstd");
  same_numel(dx, x, "rmsnorm dx/x");
  same_numel(dy, x, "rmsnorm dy/x");
  PL_CHECK(w.numel() == x.cols() && dw.numel() == x.cols() && rstd.numel() == x.rows(),
           "rmsnorm w/dw/rstd: " + shapes({x, w, dw, rstd}));
  cuda::rmsnorm_backward(*ctx_, d, dx.data, static_cast<float*>(dw.data), dy.data, x.data, w.data,
                         static_cast<const float*>(rstd.data), x.rows(), x.cols());
}

void CudaBackend::rope(Tensor x, Tensor cos, Tensor sin, const int32_t* positions, bool inverse) {
  const DType d = act_dtype(x, "rope");
  want(cos, DType::f32, "rope", "cos");
  want(sin, DType::f32, "rope", "sin");
  check_rope_args(x, cos, sin, positions);
  const int64_t BT = x.dim(0) * x.dim(1);
  const int32_t* dpos = positions ? ctx_->stage_ints(Context::kPositions, positions, BT) : nullptr;
  cuda::rope(*ctx_, d, x.data, static_cast<const float*>(cos.data), static_cast<const float*>(sin.data), x.dim(0),
             x.dim(1), x.dim(2), x.dim(3), dpos, inverse);
}

void CudaBackend::swiglu_forward(Tensor out, Tensor gate, Tensor up) {
  const DType d = act_dtype(out, "swiglu_forward");
  want(gate, d, "swiglu_forward", "gate");
  want(up, d, "swiglu_forward", "up");
  same_numel(out, gate, "swiglu");
  same_numel(out, up, "swiglu");
  cuda::swiglu_forward(*ctx_, d, out.data, gate.data, up.data, out.numel());
}

void CudaBackend::swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) {
  const DType d = act_dtype(dout, "swiglu_backward");
  for (const Tensor* t : {&dgate, &dup, &gate, &up}) want(*t, d, "swiglu_backward", "operand");
  same_numel(dout, gate, "swiglu");
  same_numel(dgate, gate, "swiglu");
  same_numel(dup, up, "swiglu");
  same_numel(up, gate, "swiglu");
  cuda::swiglu_backward(*ctx_, d, dgate.data, dup.data, dout.data, gate.data, up.data, dout.numel());
}

namespace {

// The launcher arguments of an attention call, checked as the CPU checks them (host-side span check included).
cuda::AttnArgs attention_args(const Tensor& q, const Tensor& k, const Tensor& v, const AttnSpan& span) {
  PL_CHECK(q.ndim == 4 && k.ndim == 4 && v.ndim == 4, "attention wants (B, T, heads, D) tensors");
  cuda::AttnArgs a;
  a.B = q.dim(0), a.Tq = q.dim(1), a.H = q.dim(2), a.Tk = k.dim(1), a.KV = k.dim(2), a.D = q.dim(3);
  PL_CHECK(a.KV > 0 && a.H % a.KV == 0 && k.dim(0) == a.B && k.dim(3) == a.D,
           "attention q/k shapes " + q.shape_str() + " / " + k.shape_str());
  same_numel(k, v, "attention k/v");
  a.kv_len = span.kv_len < 0 ? a.Tk : span.kv_len;
  PL_CHECK(a.Tq <= a.kv_len && a.kv_len <= a.Tk, "attention: " + std::to_string(a.Tq) + " queries, kv_len " +
                                                     std::to_string(a.kv_len) + ", " + std::to_string(a.Tk) +
                                                     " key rows");
  if (span.kv_start)
    for (int64_t b = 0; b < a.B; ++b)
      for (int64_t t = 0; t < a.Tq; ++t) {
        const int32_t s = span.kv_start[b * a.Tq + t];
        PL_CHECK(s >= 0 && s <= a.kv_len - a.Tq + t, "attention kv_start " + std::to_string(s) + " of query " +
                                                         std::to_string(t) + " in row " + std::to_string(b) +
                                                         " lets it see no key");
      }
  a.q = q.data, a.k = k.data, a.v = v.data;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.D)));
  a.dtype = q.dtype;
  return a;
}

}  // namespace

const char* attention_impl_name(AttentionImpl impl) { return impl == AttentionImpl::cudnn ? "cudnn" : "own"; }

AttentionImpl parse_attention_impl(const std::string& name) {
  if (name == "own") return AttentionImpl::own;
  if (name == "cudnn") return AttentionImpl::cudnn;
  fail_input("--attention " + name + ": expected own (the backend's flash kernels) or cudnn (cuDNN's fused "
             "attention, falling back to own per shape)");
}

bool CudaBackend::cudnn_built() {
#ifdef POLYLLAMA_HAVE_CUDNN
  return true;
#else
  return false;
#endif
}

void CudaBackend::set_attention(AttentionImpl impl) {
  if (impl == AttentionImpl::cudnn) {
#ifdef POLYLLAMA_HAVE_CUDNN
    if (!ctx_->sdpa) ctx_->sdpa = std::make_unique<cuda::CudnnSdpa>(ctx_->stream);
#else
    fail_input("--attention cudnn: this build has no cuDNN (CMake did not find it; set CUDNN_ROOT to a prefix with "
               "include/cudnn.h and lib/libcudnn.so, e.g. the nvidia-cudnn wheel, and rebuild), use --attention own");
#endif
  }
  ctx_->attention = impl;
}

AttentionImpl CudaBackend::attention() const { return ctx_->attention; }

std::string CudaBackend::attention_summary() const {
#ifdef POLYLLAMA_HAVE_CUDNN
  if (ctx_->sdpa)
    return "attention " + std::string(attention_impl_name(ctx_->attention)) + ": " + ctx_->sdpa->summary();
#endif
  return "attention own: the backend's flash kernels";
}

std::string CudaBackend::description() const {
  return device_name() + " (sm_" + std::to_string(compute_capability()) + ", " +
         std::to_string(device_memory_bytes() >> 20) + " MiB)";
}

double CudaBackend::peak_tflops() const { return bf16_peak_tflops(device_name()); }

int64_t CudaBackend::cudnn_attention_calls(bool backward) const {
#ifdef POLYLLAMA_HAVE_CUDNN
  if (ctx_->sdpa) return backward ? ctx_->sdpa->counts().bwd : ctx_->sdpa->counts().fwd;
#endif
  (void)backward;
  return 0;
}

// cuDNN when it is selected and takes the call (it counts and logs what it leaves to the own kernels).
bool CudaBackend::cudnn_attention_forward(const cuda::AttnArgs& a) {
#ifdef POLYLLAMA_HAVE_CUDNN
  return ctx_->attention == AttentionImpl::cudnn && ctx_->sdpa && ctx_->sdpa->forward(a);
#else
  (void)a;
  return false;
#endif
}

bool CudaBackend::cudnn_attention_backward(const cuda::AttnArgs& a, const void* dout, void* dq, void* dk, void* dv) {
#ifdef POLYLLAMA_HAVE_CUDNN
  return ctx_->attention == AttentionImpl::cudnn && ctx_->sdpa && ctx_->sdpa->backward(a, dout, dq, dk, dv);
#else
  (void)a, (void)dout, (void)dq, (void)dk, (void)dv;
  return false;
#endif
}

void CudaBackend::attention_forward(Tensor out, Tensor saved, Tensor q, Tensor k, Tensor v, const AttnSpan& span) {
  const DType d = act_dtype(q, "attention_forward");
  for (const Tensor* t : {&out, &k, &v}) want(*t, d, "attention_forward", "operand");
  want(saved, DType::f32, "attention_forward", "saved (lse)");
  cuda::AttnArgs a = attention_args(q, k, v, span);
  same_numel(out, q, "attention out/q");
  PL_CHECK(saved.numel() >= a.B * a.H * a.Tq, "attention saved state must hold (B, H, Tq): " + shapes({saved, q}));
  a.out = out.data;
  a.lse = static_cast<float*>(saved.data);
  if (span.kv_start) a.kv_start = ctx_->stage_ints(Context::kSpans, span.kv_start, a.B * a.Tq);
  if (a.B > 0 && a.Tq > 0 && cudnn_attention_forward(a)) return;
  cuda::attention_forward(ctx_->stream, a);
}

void CudaBackend::attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                     Tensor out, Tensor saved, Tensor scratch, const AttnSpan& span) {
  const DType d = act_dtype(q, "attention_backward");
  for (const Tensor* t : {&dq, &dk, &dv, &dout, &k, &v, &out}) want(*t, d, "attention_backward", "operand");
  want(saved, DType::f32, "attention_backward", "saved (lse)");
  cuda::AttnArgs a = attention_args(q, k, v, span);
  same_numel(dq, q, "attention dq");
  same_numel(dk, k, "attention dk");
  same_numel(dv, v, "attention dv");
  same_numel(dout, q, "attention dout");
  same_numel(out, q, "attention out");
  a.out = out.data;
  PL_CHECK(saved.numel() >= a.B * a.H * a.Tq, "attention saved state must hold (B, H, Tq): " + shapes({saved, q}));
  a.lse = static_cast<float*>(saved.data);
  const size_t need = cuda::attention_backward_workspace_bytes(a);
  PL_CHECK(scratch.bytes() >= need, "attention scratch holds " + std::to_string(scratch.bytes()) + " bytes, needs " +
                                        std::to_string(need));
  if (span.kv_start) a.kv_start = ctx_->stage_ints(Context::kSpans, span.kv_start, a.B * a.Tq);
  if (a.B > 0 && a.Tq > 0 && cudnn_attention_backward(a, dout.data, dq.data, dk.data, dv.data)) return;
  cuda::attention_backward(ctx_->stream, a, dout.data, dq.data, dk.data, dv.data, scratch.data);
}

int64_t CudaBackend::attention_scratch_elems(int64_t batch, int64_t heads, int64_t seq, int64_t kv_heads,
                                             int64_t head_dim) const {
  PL_CHECK(kv_heads > 0 && head_dim > 0, "CUDA attention scratch depends on kv_heads and head_dim; pass them");
  cuda::AttnArgs a;
  a.B = batch, a.Tq = seq, a.Tk = seq, a.kv_len = seq, a.H = heads, a.KV = kv_heads, a.D = head_dim;
  size_t bytes = 0;
  for (DType d : {DType::f32, DType::bf16}) {
    a.dtype = d;
    bytes = std::max(bytes, cuda::attention_backward_workspace_bytes(a));
  }
  return static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float));  // f32 elements
}

int64_t CudaBackend::attention_saved_elems(int64_t batch, int64_t heads, int64_t tq, int64_t) const {
  return batch * heads * tq;
}

void CudaBackend::embedding_forward(Tensor out, Tensor table, const int32_t* ids) {
  const DType d = act_dtype(out, "embedding_forward");
  want(table, d, "embedding_forward", "table");
  PL_CHECK(out.cols() == table.cols(), "embedding width: " + shapes({out, table}));
  const int64_t N = out.rows();
  for (int64_t n = 0; n < N; ++n)
    PL_CHECK(ids[n] >= 0 && ids[n] < table.rows(), "embedding id " + std::to_string(ids[n]) + " outside the table");
  const int32_t* dids = ctx_->stage_ints(Context::kIds, ids, N);
  cuda::embedding_forward(*ctx_, d, out.data, table.data, dids, N, out.cols());
}

void CudaBackend::embedding_backward(Tensor dtable, Tensor dout, const int32_t* ids) {
  const DType d = act_dtype(dout, "embedding_backward");
  want(dtable, DType::f32, "embedding_backward", "dtable");
  PL_CHECK(dout.cols() == dtable.cols(), "embedding width: " + shapes({dtable, dout}));
  const int64_t N = dout.rows();
  for (int64_t n = 0; n < N; ++n)
    PL_CHECK(ids[n] >= 0 && ids[n] < dtable.rows(), "embedding id " + std::to_string(ids[n]) + " outside the table");
  std::vector<int32_t> plan;
  const int64_t U = cuda::embedding_plan(ids, N, plan);
  plan.resize(static_cast<size_t>(3 * N + 1));  // the largest plan (all tokens distinct): staged once, never regrown
  const int32_t* dplan = ctx_->stage_ints(Context::kEmbedPlan, plan.data(), static_cast<int64_t>(plan.size()));
  cuda::embedding_backward(*ctx_, d, static_cast<float*>(dtable.data), dout.data, dplan, U, N, dout.cols());
}

double CudaBackend::softmax_xent(Tensor logits, Tensor loss, const int32_t* targets, int32_t ignore_index,
                                 bool want_grad, double grad_scale) {
  const DType d = act_dtype(logits, "softmax_xent");
  want(loss, DType::f32, "softmax_xent", "loss");
  const int64_t N = logits.rows(), V = logits.cols();
  PL_CHECK(loss.numel() >= N, "xent loss buffer: " + shapes({logits, loss}));
  for (int64_t n = 0; n < N; ++n)
    PL_CHECK(targets[n] == ignore_index || (targets[n] >= 0 && targets[n] < V),
             "xent target " + std::to_string(targets[n]) + " outside the vocabulary");
  const int32_t* dt = ctx_->stage_ints(Context::kTargets, targets, N);
  cuda::softmax_xent(*ctx_, d, logits.data, static_cast<float*>(loss.data), dt, ignore_index, want_grad, grad_scale,
                     N, V);
  cuda::sum_floats(*ctx_, static_cast<const float*>(loss.data), N);
  return ctx_->fetch_result();
}

void CudaBackend::xent_partial(Tensor logits, Tensor stats, const int32_t* targets, int64_t v0, int32_t ignore_index) {
  const DType d = act_dtype(logits, "xent_partial");
  want(stats, DType::f32, "xent_partial", "stats");
  const int64_t N = logits.rows();
  PL_CHECK(stats.numel() == 2 * N, "xent_partial: stats must be (N, 2): " + shapes({logits, stats}));
  const int32_t* dt = ctx_->stage_ints(Context::kTargets, targets, N);
  cuda::xent_partial(*ctx_, d, logits.data, static_cast<float*>(stats.data), dt, v0, ignore_index, N, logits.cols());
}

double CudaBackend::xent_finish(Tensor logits, Tensor loss, Tensor stats_all, const int32_t* targets, int64_t v0,
                                int32_t ignore_index, bool want_grad, double grad_scale) {
  const DType d = act_dtype(logits, "xent_finish");
  want(loss, DType::f32, "xent_finish", "loss");
  want(stats_all, DType::f32, "xent_finish", "stats");
  const int64_t N = logits.rows();
  PL_CHECK(loss.numel() >= N && N > 0 && stats_all.numel() % (2 * N) == 0,
           "xent_finish: loss (N) and stats (parts, N, 2): " + shapes({logits, loss, stats_all}));
  const int32_t* dt = ctx_->stage_ints(Context::kTargets, targets, N);
  cuda::xent_finish(*ctx_, d, logits.data, static_cast<float*>(loss.data), static_cast<const float*>(stats_all.data),
                    stats_all.numel() / (2 * N), dt, v0, ignore_index, want_grad, grad_scale, N, logits.cols());
  cuda::sum_floats(*ctx_, static_cast<const float*>(loss.data), N);
  return ctx_->fetch_result();
}

void CudaBackend::adamw(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWParams& p) {
  for (const Tensor* t : {&param, &grad, &m, &v}) want(*t, DType::f32, "adamw", "operand (fp32 master state)");
  same_numel(param, grad, "adamw");
  same_numel(param, m, "adamw");
  same_numel(param, v, "adamw");
  cuda::adamw(*ctx_, static_cast<float*>(param.data), static_cast<const float*>(grad.data),
              static_cast<float*>(m.data), static_cast<float*>(v.data), param.numel(), p);
}

void CudaBackend::copy(Tensor dst, Tensor src) {
  act_dtype(dst, "copy");
  act_dtype(src, "copy");
  same_numel(dst, src, "copy");
  cuda::convert(*ctx_, dst.data, dst.dtype, src.data, src.dtype, src.numel());
}

void CudaBackend::zero(Tensor x) {
  if (x.bytes() > 0) PL_CUDA_CHECK(cudaMemsetAsync(x.data, 0, x.bytes(), ctx_->stream));
}

void CudaBackend::scale(Tensor x, double alpha) { cuda::scale(*ctx_, act_dtype(x, "scale"), x.data, alpha, x.numel()); }

double CudaBackend::sum_squares(Tensor x) {
  cuda::sum_squares(*ctx_, act_dtype(x, "sum_squares"), x.data, x.numel());
  return ctx_->fetch_result();
}

double CudaBackend::sum_squares_all(const std::vector<Tensor>& xs) {
  const auto per = static_cast<int64_t>(cuda::reduce_parts_per_tensor());
  const auto n = static_cast<int64_t>(xs.size());
  auto* part = reinterpret_cast<double*>(ctx_->reduce);
  PL_CHECK(static_cast<size_t>(n * (per + 1)) * sizeof(double) <= ctx_->reduce_bytes,
           "sum_squares_all: " + std::to_string(n) + " tensors exceed the reduction scratch");
  for (int64_t i = 0; i < n; ++i)
    cuda::sum_squares_part(*ctx_, act_dtype(xs[static_cast<size_t>(i)], "sum_squares_all"),
                           xs[static_cast<size_t>(i)].data, xs[static_cast<size_t>(i)].numel(), part + i * per);
  if (n == 0) return 0;
  cuda::sum_parts(*ctx_, part, n);
  return ctx_->fetch_result();
}

std::string CudaBackend::device_name() const { return ctx_->prop.name; }
size_t CudaBackend::device_memory_bytes() const { return ctx_->prop.totalGlobalMem; }
int CudaBackend::compute_capability() const { return ctx_->prop.major * 10 + ctx_->prop.minor; }

void CudaBackend::timer_start() { PL_CUDA_CHECK(cudaEventRecord(ctx_->t0, ctx_->stream)); }

double CudaBackend::timer_stop_ms() {
  PL_CUDA_CHECK(cudaEventRecord(ctx_->t1, ctx_->stream));
  PL_CUDA_CHECK(cudaEventSynchronize(ctx_->t1));
  float ms = 0;
  PL_CUDA_CHECK(cudaEventElapsedTime(&ms, ctx_->t0, ctx_->t1));
  return ms;
}

double CudaBackend::measure_gemm_tflops(int64_t n, int reps) {
  const size_t bytes = static_cast<size_t>(n * n) * 2;
  void* a = device_alloc(bytes);
  void* b = device_alloc(bytes);
  void* c = device_alloc(bytes);
  Tensor ta(a, DType::bf16, {n, n}), tb(b, DType::bf16, {n, n}), tc(c, DType::bf16, {n, n});
  // Non-zero data: all-zero operands draw less power and would flatter the clock, hence the rate.
  Tensor tf(device_alloc(static_cast<size_t>(n * n) * 4), DType::f32, {n, n});
  {
    std::vector<float> h(static_cast<size_t>(n * n));
    for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(static_cast<int>(i * 2654435761u % 17) - 8) / 64;
    upload(tf, h.data());
  }
  copy(ta, tf);
  copy(tb, tf);
  double best = 0;
  matmul(tc, ta, tb, false, true, 1.0, 0.0);  // plan and warm-up
  for (int r = 0; r < std::max(1, reps); ++r) {
    timer_start();
    matmul(tc, ta, tb, false, true, 1.0, 0.0);
    const double ms = timer_stop_ms();
    best = std::max(best, 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / (ms * 1e9));
  }
  synchronize();
  device_free(tf.data);
  device_free(a);
  device_free(b);
  device_free(c);
  return best;
}

}  // namespace polyllama
