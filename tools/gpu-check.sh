#!/usr/bin/env bash
# The GPU proof in one command, on a machine with an NVIDIA GPU, the CUDA toolkit and CMake:
#   1. configure and build for one architecture (default 90: H100/H200; CUDA_ARCH=80 for A100) into build-gpu/;
#   2. run the CUDA tests (every op against the CPU backend, the attention kernels, the GPU training run that
#      must track the CPU loss curve and whose checkpoint must load on the CPU);
#   3. run `polyllama bench --device cuda` on the 1B-class preset;
#   4. print a short table (tests passed/failed, tokens/s, TFLOP/s, MFU, the cuBLASLt bf16 GEMM rate).
# Environment: CUDA_ARCH (90), BUILD_DIR (build-gpu), BENCH_ARGS (extra bench flags, e.g. "--micro-batch 8"),
# CUDNN_ROOT / NCCL_ROOT (prefixes of cuDNN and NCCL, e.g. a PyTorch wheel's site-packages/nvidia/cudnn),
# DEPS_PREFIX (a prefix holding the project's other dependencies unpacked from Debian packages with dpkg -x;
# added to CMAKE_PREFIX_PATH, PKG_CONFIG_PATH and LD_LIBRARY_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${CUDA_ARCH:-90}
build=${BUILD_DIR:-build-gpu}
out=$build/gpu-check
mkdir -p "$out"

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no GPU visible (nvidia-smi -L failed); run this on a GPU node" >&2
  exit 1
fi
nvidia-smi -L | tee "$out/gpus.txt"

cmake_args=(-DCMAKE_BUILD_TYPE=Release -DPOLYLLAMA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch")
if [[ -n ${DEPS_PREFIX:-} ]]; then
  multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
  cmake_args+=(-DCMAKE_PREFIX_PATH="$DEPS_PREFIX/usr;$DEPS_PREFIX/usr/lib/$multiarch/cmake")
  export PKG_CONFIG_PATH="$DEPS_PREFIX/usr/lib/$multiarch/pkgconfig:$DEPS_PREFIX/usr/share/pkgconfig:${PKG_CONFIG_PATH:-}"
  export LD_LIBRARY_PATH="$DEPS_PREFIX/usr/lib/$multiarch:${LD_LIBRARY_PATH:-}"
fi
[[ -n ${CUDNN_ROOT:-} ]] && export LD_LIBRARY_PATH="$CUDNN_ROOT/lib:${LD_LIBRARY_PATH:-}"
[[ -n ${NCCL_ROOT:-} ]] && export LD_LIBRARY_PATH="$NCCL_ROOT/lib:${LD_LIBRARY_PATH:-}"

echo "== configure + build (sm_$arch) -> $build"
cmake -S . -B "$build" "${cmake_args[@]}" >"$out/configure.log" 2>&1 || { cat "$out/configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" >"$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }

echo "== CUDA tests"
tests_rc=0
"$build/tests/polyllama_tests" --gtest_filter='Ops.*:*CudaAttention*:CudaTraining.*' \
  --gtest_output="xml:$out/tests.xml" 2>&1 | tee "$out/tests.log" || tests_rc=$?
passed=$(grep -c '^\[       OK \]' "$out/tests.log" || true)
failed=$(grep -c '^\[  FAILED  \].*(' "$out/tests.log" || true)
skipped=$(grep -c '^\[  SKIPPED \].*(' "$out/tests.log" || true)

echo "== bench"
bench_rc=0
# shellcheck disable=SC2086
"$build/polyllama" bench --device cuda --preset bench-1b --seq-len 2048 --micro-batch 4 --steps 10 --warmup 3 \
  --json ${BENCH_ARGS:-} 2>&1 | tee "$out/bench.log" || bench_rc=$?
json=$(grep '^{' "$out/bench.log" | tail -1 || true)

echo
echo "== gpu-check summary ($(head -1 "$out/gpus.txt"))"
printf '%-28s %s\n' "CUDA tests" "$passed passed, $failed failed, $skipped skipped (rc $tests_rc)"
if [[ -n $json ]]; then
  python3 - "$json" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
rows = [("device", j["device"]), ("config", f'{j["params"]/1e6:.0f}M params, seq {j["seq_len"]}, micro-batch {j["micro_batch"]}'),
        ("step time", f'{j["step_s"]*1e3:.1f} ms'), ("tokens/s", f'{j["tokens_per_s"]:.0f}'),
        ("model TFLOP/s", f'{j["tflops"]:.1f}'), ("MFU", f'{j["mfu_percent"]:.1f} % of {j["peak_tflops"]:.0f} TFLOP/s'),
        ("cuBLASLt bf16 GEMM 8192^3", f'{j["gemm_bf16_tflops"]:.1f} TFLOP/s')]
for k, v in rows: print(f"{k:<28} {v}")
PY
else
  echo "bench: no result (rc $bench_rc), see $out/bench.log"
fi
[[ $tests_rc -eq 0 && $bench_rc -eq 0 ]]
