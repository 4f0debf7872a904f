#!/usr/bin/env bash
# `polyllama eval` against lm-evaluation-harness on the same model and questions: the bench config (56M parameters,
# LLaMA 2's tokenizer, random weights: the agreement of every option's log-probability is what is compared, not the
# accuracy), 5-shot C-Eval and MMLU val from ../shared/data/bench (or BENCH), exported to Hugging Face with
# `convert --to hf` for lm-eval's hf backend on the CPU. Prints wall time, questions/s and per-question agreement
# (tools/bench/eval_vs_lm_eval.py says exactly what is compared).
# Needs lm-eval: a Python with it (LM_EVAL_PYTHON), e.g.
#   /usr/bin/python3 -m venv --system-site-packages /tmp/lmeval
#   /tmp/lmeval/bin/pip install "lm-eval==0.4.2" "transformers<4.40" "accelerate<0.30" "peft<0.11" \
#     "datasets<2.19" "pyarrow<16" sentencepiece protobuf   # (lm-eval 0.4.2's own era: newer pyarrow needs NumPy 2)
# Usage: LM_EVAL_PYTHON=/tmp/lmeval/bin/python [REPEAT=3] tools/bench/eval_vs_lm_eval.sh [THREADS=2]
# (each program runs REPEAT times, in turns; the medians are compared)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${POLYLLAMA:-$root/build/polyllama}
bench=${BENCH:-$root/../shared/data/bench}
tok=${TOKENIZER:-$root/../shared/data/tokenizers/llama2-tokenizer.model}
py=${LM_EVAL_PYTHON:?set LM_EVAL_PYTHON to a Python with lm-eval installed (see the top of this script)}
threads=${1:-2}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
subjects=$(ls "$bench/ceval/val" | sed 's/_val\.csv$//' | paste -sd,)
"$bin" init --run-dir "$work/run" --tokenizer "$tok" --preset bench --max-position-embeddings 4096 --seed 1 > /dev/null
"$bin" convert --from ckpt "$work/run" --to hf "$work/hf" --dtype f32 > /dev/null
python3 "$root/tools/bench/eval_vs_lm_eval.py" --polyllama "$bin" --ckpt "$work/run" --hf "$work/hf" --bench "$bench" \
  --tasks ceval,mmlu --subjects-ceval "$subjects" --work "$work/cmp" --python "$py" --threads "$threads" --repeat "${REPEAT:-3}"
