#pragma once
// The op table every backend implements (CPU now, CUDA in its own area). The model is written against this
// interface alone. Conventions: row-major; "(N, C)" means N rows of C; outputs documented as `=` are
// overwritten, `+=` accumulate (weight and residual-stream gradients accumulate).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "polyllama/core/tensor.hpp"

namespace polyllama {

enum class Op : int {
  matmul, rmsnorm, rope, swiglu, attention, embedding, softmax_xent, adamw, elementwise, count
};

struct AdamWParams {
  double lr = 0, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0;
  double grad_scale = 1.0;  // multiplies the gradient as it is read: clipping without a pass of its own
  int64_t step = 1;  // 1-based, for bias correction
};

// Which keys each query of an attention call may see. Only the first kv_len rows of k and v hold keys (a KV
// cache is allocated for the longest sequence); the Tq queries are the last Tq of those kv_len positions, so
// query t sits at key position p(t) = kv_len - Tq + t and sees keys [kv_start[b * Tq + t], p(t)].
// kv_start (host memory) is how packed examples stay apart and how left padding is skipped; nullptr means 0
// for every query (plain causal). 0 <= kv_start <= p(t) is the caller's promise.
struct AttnSpan {
  int64_t kv_len = -1;              // -1: every row of k and v
  const int32_t* kv_start = nullptr;  // (B, Tq)
  // false where no backward follows (decoding): `saved` is then attention_decode_elems' workspace, which a backend
  // may size far below what a backward needs.
  bool for_backward = true;
};

// The argument checks every backend's rope makes: x (B, T, H, D) with even D, positions >= 0, and a cos/sin table
// (max_pos, D/2) long enough for the largest position (T - 1 without positions).
void check_rope_args(Tensor x, Tensor cos, Tensor sin, const int32_t* positions);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual bool supports(Op op, DType dtype) const = 0;

  // Memory the ops read and write. Tensors handed to the ops live there; token ids, positions and spans stay in
  // host memory (the backend stages them). On the CPU it is host memory and the copies are memcpy.
  virtual bool host_memory() const { return true; }
  virtual void* device_alloc(size_t bytes);  // aligned to 256 bytes; fails with the size when out of memory
  virtual void device_free(void* p);
  virtual void upload(Tensor dst, const void* host_src);  // dst.bytes() from host memory
  virtual void download(void* host_dst, Tensor src);      // src.bytes() into host memory
  // Waits until every op issued so far has finished (ops of asynchronous backends return before they run).
  virtual void synchronize() {}

  // What the backend runs on, for logs and benchmark lines: "cpu, 2 threads (OpenBLAS haswell)" or the GPU's
  // name, compute capability and memory.
  virtual std::string description() const { return name(); }
  // The dense rate this device reaches on an n x n x n product in the dtype training computes in (CPU: fp32
  // sgemm; GPU: bf16 tensor cores), best of `reps`, in TFLOP/s: the practical ceiling a training step is
  // measured against. 0 when the backend cannot measure it.
  virtual double measure_matmul_tflops(int64_t n, int reps) { (void)n, (void)reps; return 0.0; }
  // The device's dense peak in that dtype (TFLOP/s) for the model-FLOPs utilization; 0 when not known.
  virtual double peak_tflops() const { return 0.0; }

  // The attention kernels, by the name `--attention` takes: "own" (the backend's own kernels, every backend) or
  // "cudnn" (cuDNN's fused attention, the CUDA backend in a build with cuDNN). A backend without the choice fails
  // (exit 1) for anything but "own", naming what it needs.
  virtual void set_attention(const std::string& impl);
  // Which kernels ran the attention calls so far (empty where there is no choice), and how many of the calls a
  // vendor library's fused attention took (forward and backward).
  virtual std::string attention_summary() const { return {}; }
  virtual int64_t fused_attention_calls() const { return 0; }

  // Mixed precision (backends that support bf16): an op may take bf16 activations with f32 statistics (rstd,
  // saved attention state, per-row loss) and f32 parameter gradients (dw of rmsnorm_backward, dtable of
  // embedding_backward, c of a matmul with bf16 a and b); every such mix is spelled out by the backend's
  // supports() and checked per call. The CPU backend takes one dtype per call.

  // c = alpha * op(a) @ op(b) + beta * c; a is (M, K) or, with trans_a, stored (K, M); likewise b.
  virtual void matmul(Tensor c, Tensor a, Tensor b, bool trans_a, bool trans_b, double alpha, double beta) = 0;

  // y = x / rms(x) * w, x (N, C); rstd (N) = 1 / rms saved for backward.
  virtual void rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor w, double eps) = 0;
  // dx += ..., dw += ...
  virtual void rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w, Tensor rstd) = 0;

  // In place on x (B, T, H, D), rotate-half convention (Hugging Face LLaMA): pairs (i, i + D/2) rotate by
  // angle pos * theta^(-2i/D). positions (B, T) holds each token's position (host memory; packed examples
  // restart at 0, left-padded prompts start after their padding); nullptr means pos = t. cos/sin are
  // (max_pos, D/2). inverse applies the transposed rotation, which is exactly the backward pass.
  virtual void rope(Tensor x, Tensor cos, Tensor sin, const int32_t* positions, bool inverse) = 0;

  // out = silu(gate) * up, all (N, F).
  virtual void swiglu_forward(Tensor out, Tensor gate, Tensor up) = 0;
  // dgate = ..., dup = ...
  virtual void swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) = 0;

  // Causal grouped-query attention. q, out (B, Tq, H, D); k, v (B, Tk, KV, D) with H % KV == 0 and Tq <= Tk.
  // `saved` is what backward needs, attention_saved_elems(B, H, Tq, Tk) elements: on the CPU the probabilities
  // (B, H, Tq, Tk) = softmax(q k^T / sqrt(D)) (masked entries = 0) in the dtype of q; on CUDA the log-sum-exp
  // of each query's scores (B, H, Tq) in f32. See AttnSpan for which keys each query sees; training passes
  // Tq == Tk and a default span (plain causal).
  virtual void attention_forward(Tensor out, Tensor saved, Tensor q, Tensor k, Tensor v, const AttnSpan& span) = 0;
  // dq = ..., dk = ... (all Tk rows written), dv = ...; out is the forward's output (flash-style backends form
  // dot(dout, out) per query from it; the CPU, which saved the probabilities, ignores it and accepts an empty
  // tensor); scratch holds attention_scratch_elems(B, H, Tk, KV, D).
  virtual void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                  Tensor out, Tensor saved, Tensor scratch, const AttnSpan& span) = 0;

  // Scratch and saved state are in the dtype of q, or f32 when q is bf16 (statistics stay in f32).
  // kv_heads and head_dim may be 0 for backends that do not need them (the CPU's scratch is per query block).
  virtual int64_t attention_scratch_elems(int64_t batch, int64_t heads, int64_t seq, int64_t kv_heads = 0,
                                          int64_t head_dim = 0) const = 0;
  virtual int64_t attention_saved_elems(int64_t batch, int64_t heads, int64_t tq, int64_t tk) const = 0;
  // `saved` of a call with span.for_backward false. The CPU keeps only a block of scores per thread (its
  // probabilities would be B H Tq Tk elements: gigabytes for a 7B model's prefill over a long cache).
  virtual int64_t attention_decode_elems(int64_t batch, int64_t heads, int64_t tq, int64_t tk, int64_t head_dim) const {
    (void)head_dim;
    return attention_saved_elems(batch, heads, tq, tk);
  }

  // out (N, C) = table[ids]; ids are N token ids < table rows.
  virtual void embedding_forward(Tensor out, Tensor table, const int32_t* ids) = 0;
  // dtable[ids[n]] += dout[n]
  virtual void embedding_backward(Tensor dtable, Tensor dout, const int32_t* ids) = 0;

  // Fused softmax cross-entropy over logits (N, V). loss[n] = -log softmax(logits[n])[target[n]], 0 where
  // target == ignore_index. With want_grad the logits are overwritten by grad_scale * (softmax - onehot)
  // (zero rows for ignored targets), so the full logits never need a second buffer. Returns sum of loss.
  virtual double softmax_xent(Tensor logits, Tensor loss, const int32_t* targets, int32_t ignore_index,
                              bool want_grad, double grad_scale) = 0;

  // The vocab-parallel cross-entropy (llama_sharding.hpp) in two halves around an all-gather over the tp ranks,
  // so full rows of logits never exist. logits (N, Vl) hold vocabulary ids [v0, v0 + Vl) of each row.
  // xent_partial: stats (N, 2) = (log-sum-exp of the row's slice, the target's logit when the slice holds the
  // target, else 0; 0 for both where target == ignore_index).
  virtual void xent_partial(Tensor logits, Tensor stats, const int32_t* targets, int64_t v0, int32_t ignore_index) = 0;
  // stats_all (parts, N, 2): every slice's stats, the whole vocabulary. loss (N) = log-sum-exp over the parts -
  // the target's logit (0 where ignored); with want_grad the logits become grad_scale * (softmax - onehot) on
  // this slice (zero rows where ignored). Returns the sum of loss, in row order. Statistics in the dtype of the
  // logits, f32 for bf16 logits.
  virtual double xent_finish(Tensor logits, Tensor loss, Tensor stats_all, const int32_t* targets, int64_t v0,
                             int32_t ignore_index, bool want_grad, double grad_scale) = 0;

  // Decoupled AdamW on one parameter tensor; m and v are updated in place.
  virtual void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWParams& p) = 0;

  // Elementwise helpers.
  virtual void copy(Tensor dst, Tensor src) = 0;
  virtual void zero(Tensor x) = 0;
  virtual void scale(Tensor x, double alpha) = 0;
  virtual double sum_squares(Tensor x) = 0;  // accumulated in double
  // The sum over xs, in order, of sum_squares(x): a device backend forms it with one round trip to the host
  // instead of one per tensor (the gradient norm of every parameter at each step).
  virtual double sum_squares_all(const std::vector<Tensor>& xs);
};

}  // namespace polyllama
