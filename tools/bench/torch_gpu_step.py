#!/usr/bin/env python3
"""The GPU peer of `polyllama bench --device cuda`: one LLaMA training step in PyTorch as a practitioner writes it
on a GPU (fp32 master weights, bf16 autocast, fused flash attention through F.scaled_dot_product_attention, fused
AdamW), on the same config. Prints one JSON line: tokens/s, model TFLOP/s and MFU, counted exactly as polyllama
counts them (6 x matmul parameters x tokens + causal attention 6 x layers x tokens x seq x hidden).
Usage: python3 tools/bench/torch_gpu_step.py [--hidden 2048 --ffn 5632 --layers 16 --heads 16 --kv-heads 16
       --vocab 32000 --seq 2048 --batch 4 --steps 10 --warmup 3 --peak-tflops 989 --compile]"""
import argparse, json, math, time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
for name, default in [("hidden", 2048), ("ffn", 5632), ("layers", 16), ("heads", 16), ("kv-heads", 16),
                      ("vocab", 32000), ("seq", 2048), ("batch", 4), ("steps", 10), ("warmup", 3)]:
    p.add_argument("--" + name, type=int, default=default)
p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100/H200 SXM: 989)")
p.add_argument("--compile", action="store_true", help="torch.compile the model (slower to start)")
a = p.parse_args()
assert torch.cuda.is_available(), "no CUDA device"
dev = torch.device("cuda")
torch.manual_seed(0)
hd = a.hidden // a.heads


class RMSNorm(nn.Module):
    def __init__(s, d):
        super().__init__()
        s.w = nn.Parameter(torch.ones(d))

    def forward(s, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * s.w.to(x.dtype)


def rope(x, cos, sin):  # rotate-half (Hugging Face LLaMA)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), -1)


class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.n1, s.n2 = RMSNorm(a.hidden), RMSNorm(a.hidden)
        s.q = nn.Linear(a.hidden, a.heads * hd, bias=False)
        s.k = nn.Linear(a.hidden, a.kv_heads * hd, bias=False)
        s.v = nn.Linear(a.hidden, a.kv_heads * hd, bias=False)
        s.o = nn.Linear(a.heads * hd, a.hidden, bias=False)
        s.g = nn.Linear(a.hidden, a.ffn, bias=False)
        s.u = nn.Linear(a.hidden, a.ffn, bias=False)
        s.d = nn.Linear(a.ffn, a.hidden, bias=False)

    def forward(s, x, cos, sin):
        B, T, _ = x.shape
        h = s.n1(x)
        q = rope(s.q(h).view(B, T, a.heads, hd), cos, sin).transpose(1, 2)
        k = rope(s.k(h).view(B, T, a.kv_heads, hd), cos, sin).transpose(1, 2)
        v = s.v(h).view(B, T, a.kv_heads, hd).transpose(1, 2)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=a.kv_heads != a.heads)
        x = x + s.o(att.transpose(1, 2).reshape(B, T, -1))
        h = s.n2(x)
        return x + s.d(F.silu(s.g(h)) * s.u(h))


class Llama(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = nn.Embedding(a.vocab, a.hidden)
        s.blocks = nn.ModuleList(Block() for _ in range(a.layers))
        s.norm = RMSNorm(a.hidden)
        s.head = nn.Linear(a.hidden, a.vocab, bias=False)
        f = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(a.seq).float(), f)
        s.register_buffer("cos", ang.cos()[None, :, None, :], persistent=False)
        s.register_buffer("sin", ang.sin()[None, :, None, :], persistent=False)

    def forward(s, idx):
        x = s.emb(idx)
        cos, sin = s.cos.to(x.dtype), s.sin.to(x.dtype)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            for b in s.blocks:
                x = b(x, cos.to(torch.bfloat16), sin.to(torch.bfloat16))
            return s.head(s.norm(x))


m = Llama().to(dev)
opt = torch.optim.AdamW(m.parameters(), lr=3e-4, fused=True)
step_model = torch.compile(m) if a.compile else m
matmul_params = sum(p.numel() for n, p in m.named_parameters() if p.dim() == 2 and not n.startswith("emb"))
tokens = a.batch * a.seq
flops = 6.0 * matmul_params * tokens + 6.0 * a.layers * tokens * a.seq * a.hidden
idx = torch.randint(0, a.vocab, (a.batch, a.seq + 1), device=dev)


def step():
    logits = step_model(idx[:, :-1])
    loss = F.cross_entropy(logits.float().view(-1, a.vocab), idx[:, 1:].reshape(-1))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


for _ in range(a.warmup):
    step()
torch.cuda.synchronize()
times = []
for _ in range(a.steps):
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    loss = step()
    e1.record()
    torch.cuda.synchronize()
    times.append(e0.elapsed_time(e1) / 1e3)
times.sort()
t = times[len(times) // 2]
print(json.dumps({"peer": "pytorch " + torch.__version__ + (" compile" if a.compile else " eager"),
                  "gpu": torch.cuda.get_device_name(), "step_s": t, "tokens_per_s": tokens / t,
                  "tflops": flops / t / 1e12, "mfu": flops / t / 1e12 / a.peak_tflops,
                  "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "loss": float(loss)}))
