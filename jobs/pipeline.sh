#!/usr/bin/env bash
# The main job: the study in miniature, under `mpirun -np 2`, on text a fresh Debian machine installs itself.
#   1 corpora       King James Bible (bible-kjv-text) and Chinese poems and prose (fortunes-zh), with held-out
#                   documents (tools/corpus-main.sh)
#   2 tokenizer     an English LLaMA-style BPE tokenizer (`tokenizer train`), then Chinese pieces trained on the
#                   Chinese training text appended to it (`tokenizer extend`)
#   3 data          token shards: English with the English tokenizer, Chinese with the extended one (`data`)
#   4 base model    `init` + `pretrain` on English: the "original model" of the transfer
#   5 eval before   perplexity on held-out English and Chinese, the multiple-choice questions (`eval`)
#   6 transfer      `resize-vocab` to the extended tokenizer, continued pretraining on Chinese (`pretrain`)
#   7 sft           instruction tuning (`sft`): poems (tools/sft-demo-data.sh) and multiple-choice practice
#                   questions about other poems (share/main/sft_mc.jsonl)
#   8 eval after    perplexity after continued pretraining and after sft; the multiple-choice questions
#                   (share/main/ceval, C-Eval's format, 40 questions, chance 25 %); answers to the sample
#                   instructions (share/responses/zh_instructions.jsonl) and their code-switching rate
#   9 summary       a table (perplexities before/after, accuracy, code-switching) printed and written to
#                   RUN_DIR/results.md, beside each eval's own results.json/results.md
# Every stage is skipped when its outputs exist and are complete, so a rerun (after Ctrl-C, a crash, a reboot)
# continues where the last one stopped; training stages resume from their last checkpoint. Delete RUN_DIR (or
# one stage's directory) to redo it. Changing a setting does not invalidate finished stages (except the
# training steps, which a rerun extends): use a new RUN_DIR for a new experiment.
#
# Settings, all from the environment (defaults: about 12 minutes on 2 quiet cores):
#   RUN_DIR (runs/main)             everything the job writes
#   POLYLLAMA (build/polyllama)     the binary
#   NP (2)                          MPI ranks of the training and eval stages (data parallel)
#   LAUNCH ("mpirun -np $NP")       the launcher; as root the Open MPI run-as-root variables are set, and
#                                   --oversubscribe is added when NP exceeds the cores
#   THREADS (cores / NP, >= 1)      CPU threads per rank
#   CORPUS_DIR (RUN_DIR/corpus)     where tools/corpus-main.sh writes the texts (EN_HOLDOUT, ZH_HOLDOUT: every
#                                   Nth document held out, 20 and 10)
#   EN_VOCAB (4000)                 pieces of the English tokenizer
#   ZH_PIECES (8000)                vocabulary of the Chinese model whose new pieces are appended
#   ZH_COVERAGE (0.9995)            its character coverage: the characters it must hold as pieces (5,800 of
#                                   this corpus at 0.9995) have to fit in ZH_PIECES
#   MODEL ("--hidden-size 128 --intermediate-size 352 --num-hidden-layers 4 --num-attention-heads 4
#          --num-key-value-heads 2")      model flags for `init` (plus --max-position-embeddings MAX_POS)
#   MAX_POS (512)                   longest sequence the model serves
#   SEQ (128)  MICRO_BATCH (8)      pretraining sequence length and sequences per rank per step
#   BASE_STEPS (700)  BASE_LR (3e-3)             English pretraining
#   RESIZE_INIT (normal)            new embedding rows (`resize-vocab --init`): docs/vocabulary.md measured
#                                   normal best on models this small; subword-mean is the verb's default
#   CPT_STEPS (600)  CPT_LR (2e-3)               continued pretraining on Chinese
#   CPT_POEM_WEIGHT (0.5)           share of poems (the rest: prose) in continued pretraining; the poems are
#                                   what the questions ask about, the prose is 16x larger
#   CPT_EN_WEIGHT (0)               share of English replayed during continued pretraining (0: Chinese only,
#                                   as the study does)
#   SFT_STEPS (300)  SFT_SEQ (256)  SFT_LR (1e-3)  SFT_MICRO_BATCH (8)
#   SFT_TEMPLATE (share/main/mc_template.json)   the prompt verbatim, the answer right after it: the same
#                                   string C-Eval's prompt is, so the letter tuned is the letter eval reads
#   SFT_EXTRA ("")                  more instruction files for sft, space-separated
#   MC_DIR (share/main)             the multiple-choice questions, C-Eval's layout (ceval/{dev,val}, mapping)
#   MC_SHOTS (0)                    few-shot examples before each question (the dev split holds 5); sft
#                                   practice questions are zero-shot, so change both together
#                                   (tools/corpus-questions.py --shots K)
#   RESPONSES (share/responses/zh_instructions.jsonl)  RESP_TOKENS (64)   instructions answered, tokens each
#   CS_ALLOW (none)                 scripts besides Han accepted in a Chinese answer (none: English counts as
#                                   code-switching, which is what the transfer should avoid)
#   JUDGE_URL, JUDGE_MODEL ("")     an OpenAI-compatible judge for the answers (eval --judge-url/--judge-model;
#                                   the key in OPENAI_API_KEY); without them the answers are not scored, only
#                                   checked for code-switching
#   PPL_DOCS (30)                   held-out documents per language for perplexity (0: all)
# Exit codes: 0 done; 3 a training stage stopped on a signal after a checkpoint (rerun to resume); else failed.
set -euo pipefail
if (($#)); then
  echo "pipeline: no arguments ($*): settings are environment variables, listed at the top of $0" >&2; exit 1
fi
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${POLYLLAMA:-$root/build/polyllama}
run=${RUN_DIR:-$root/runs/main}
np=${NP:-2}
cores=$(nproc)
threads=${THREADS:-$(( cores / np > 0 ? cores / np : 1 ))}
if [[ -z ${LAUNCH:-} ]]; then
  launch="mpirun -np $np"
  (( np > cores )) && launch+=" --oversubscribe"
  if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
else
  launch=$LAUNCH
fi
corpus=${CORPUS_DIR:-$run/corpus}
model=${MODEL:---hidden-size 128 --intermediate-size 352 --num-hidden-layers 4 --num-attention-heads 4 --num-key-value-heads 2}
max_pos=${MAX_POS:-512}
seq=${SEQ:-128}; mb=${MICRO_BATCH:-8}
base_steps=${BASE_STEPS:-700}; base_lr=${BASE_LR:-3e-3}
cpt_steps=${CPT_STEPS:-600}; cpt_lr=${CPT_LR:-2e-3}
sft_steps=${SFT_STEPS:-300}; sft_seq=${SFT_SEQ:-256}; sft_lr=${SFT_LR:-1e-3}; sft_mb=${SFT_MICRO_BATCH:-8}
mc_dir=${MC_DIR:-$root/share/main}
mc_shots=${MC_SHOTS:-0}
responses=${RESPONSES:-$root/share/responses/zh_instructions.jsonl}
ppl_docs=${PPL_DOCS:-30}

[[ -x $bin ]] || { echo "pipeline: $bin not found; build first (tools/build.sh)" >&2; exit 1; }
for f in "$mc_dir/ceval/subject_mapping.json" "$mc_dir/sft_mc.jsonl" "$responses" "${SFT_TEMPLATE:-$mc_dir/mc_template.json}"; do
  [[ -f $f ]] || { echo "pipeline: $f not found (share/ of the source tree, or set MC_DIR/RESPONSES/SFT_TEMPLATE)" >&2; exit 1; }
done
sft_template=${SFT_TEMPLATE:-$mc_dir/mc_template.json}
mkdir -p "$run"
timings=$run/timings.tsv
: > "$timings"  # this run's stage times (a skipped stage takes ~0 s)
t_job=$SECONDS
n_stages=9

stage() {  # N NAME: a progress header with the time since the job started
  printf '\n== [%s/%s] %s  (%s elapsed)\n' "$1" "$n_stages" "$2" "$(date -u -d @$((SECONDS - t_job)) +%M:%S)"
  t_stage=$SECONDS
}
done_stage() {  # NAME: the stage's wall time, for timings.tsv and the summary
  printf '%s\t%d\n' "$1" $((SECONDS - t_stage)) >> "$timings"
}
skip() { echo "   $1: complete, skipped"; }
# The step that RUN/ckpt/latest names (0 when none).
latest_step() {
  local l
  [[ -f $1/ckpt/latest ]] || { echo 0; return; }
  l=$(cat "$1/ckpt/latest"); l=${l##*step_}
  echo $((10#$l))
}
# A training run is complete when world rank 0 wrote status.json "done" and latest is the last step. mpirun
# masks exit codes, so the state is read from status.json, not from $?.
trained() {  # RUN STEPS
  [[ -f $1/status.json ]] && grep -q '"state": *"done"' "$1/status.json" && [[ $(latest_step "$1") -ge $2 ]]
}
train() {  # RUN STEPS VERB ARGS...: run a training verb, and decide from status.json how it ended
  local dir=$1 steps=$2 rc=0
  shift 2
  # shellcheck disable=SC2086
  $launch "$bin" "$@" --run-dir "$dir" --steps "$steps" --threads "$threads" || rc=$?
  if [[ -f $dir/status.json ]] && grep -q '"state": *"stopped"' "$dir/status.json"; then
    echo "pipeline: $dir stopped on a signal after a clean checkpoint; rerun jobs/pipeline.sh to resume" >&2
    exit 3
  fi
  trained "$dir" "$steps" || { echo "pipeline: $* failed (exit $rc; $dir/status.json: $(cat "$dir/status.json" 2>/dev/null))" >&2; exit 2; }
}
evaluate() {  # OUT ARGS...: an eval run, marked complete only when it returned 0
  local out=$1
  shift
  # shellcheck disable=SC2086
  $launch "$bin" eval --out "$out.tmp" --threads "$threads" "$@"
  rm -rf "$out"; mv "$out.tmp" "$out"
}
ppl_args=(--tasks ppl,ceval --ppl-files "en:$corpus/en_heldout.txt" "zh:$corpus/zh_heldout.txt" --blank-line-docs
          --ppl-max-docs "$ppl_docs" --ppl-seq "$seq" --bench-dir "$mc_dir" --num-fewshot "$mc_shots")

echo "pipeline: $run | $launch, $threads threads per rank | base $base_steps, transfer $cpt_steps, sft $sft_steps steps"

stage 1 "corpora (King James Bible; fortunes-zh poems and prose)"
tools_corpus=$root/tools/corpus-main.sh
"$tools_corpus" "$corpus"
done_stage corpora

stage 2 "tokenizers: English BPE, then Chinese pieces appended"
tok=$run/tokenizer
mkdir -p "$tok"
if [[ -s $tok/en.model ]]; then skip "tokenizer train"; else
  # LLaMA's settings (BPE, byte fallback, split digits); Chinese, absent from this text, falls back to bytes.
  "$bin" tokenizer train --input "$corpus/en_train.txt" --vocab-size "${EN_VOCAB:-4000}" --out "$tok/en.tmp.model"
  mv "$tok/en.tmp.model" "$tok/en.model"
fi
if [[ -s $tok/en-zh.model ]]; then skip "tokenizer extend"; else
  "$bin" tokenizer extend --base "$tok/en.model" --train-on "$corpus/zh_poems.txt" "$corpus/zh_prose.txt" \
    --new-pieces "${ZH_PIECES:-8000}" --spm "character_coverage=${ZH_COVERAGE:-0.9995}" --out "$tok/en-zh.tmp.model" \
    --report "$corpus/zh_heldout.txt" "$corpus/en_heldout.txt" | tee "$tok/extend.log"
  mv "$tok/en-zh.tmp.train.model" "$tok/zh-pieces.model"  # the Chinese model the pieces came from
  mv "$tok/en-zh.tmp.model" "$tok/en-zh.model"
fi
done_stage tokenizers

stage 3 "token shards"
for d in "en:en:en_train" "zh_poems:en-zh:zh_poems" "zh_prose:en-zh:zh_prose"; do
  IFS=: read -r name model_name text <<< "$d"
  if [[ -d $run/data/$name ]]; then skip "data $name"; else
    $launch "$bin" data --tokenizer "$tok/$model_name.model" --input "$corpus/$text.txt" --blank-line-docs \
      --out "$run/data/$name"
  fi
done
if [[ ${CPT_EN_WEIGHT:-0} != 0 && ! -d $run/data/en_ext ]]; then
  $launch "$bin" data --tokenizer "$tok/en-zh.model" --input "$corpus/en_train.txt" --blank-line-docs --out "$run/data/en_ext"
fi
done_stage data

# Learning-rate schedule flags for a run of N steps: 10 % warmup, cosine to a tenth, ~10 progress lines,
# a checkpoint every quarter (what a rerun resumes from). --val-every 0: held-out text is in CORPUS_DIR, and
# the default (every 20th document held out) would hide poems the questions ask about.
sched() {  # STEPS LR
  local s=$1
  echo --lr "$2" --min-lr "$(awk -v l="$2" 'BEGIN { print l / 10 }')" --warmup-steps $(( s / 10 > 0 ? s / 10 : 1 )) \
    --log-interval $(( s / 10 > 0 ? s / 10 : 1 )) --save-interval $(( s / 4 > 0 ? s / 4 : 1 )) --keep-last 2 --val-every 0
}

stage 4 "base model: init + pretraining on English"
base=$run/base
if trained "$base" "$base_steps"; then skip "base pretraining"; else
  if [[ ! -f $base/ckpt/latest ]]; then
    # shellcheck disable=SC2086
    "$bin" init --run-dir "$base" --tokenizer "$tok/en.model" $model --max-position-embeddings "$max_pos"
  fi
  # shellcheck disable=SC2046
  train "$base" "$base_steps" pretrain --data "$run/data/en" --seq-len "$seq" --micro-batch "$mb" \
    $(sched "$base_steps" "$base_lr")
fi
done_stage base

stage 5 "eval before the transfer (base model): perplexity, questions"
if [[ -f $run/eval/base/results.json ]]; then skip "eval base"; else
  evaluate "$run/eval/base" --ckpt "$base" "${ppl_args[@]}"
fi
done_stage eval_base

stage 6 "transfer: resize-vocab, continued pretraining on Chinese"
resized=$run/resized
if [[ -f $resized/ckpt/latest ]]; then skip "resize-vocab"; else
  rm -rf "$resized"  # a resize that died midway leaves no latest; it starts over
  # One rank streams any size (resize-vocab refuses several).
  "$bin" resize-vocab --checkpoint "$base" --tokenizer "$tok/en-zh.model" --out "$resized" --init "${RESIZE_INIT:-normal}"
fi
cpt=$run/cpt
cpt_data=("${CPT_POEM_WEIGHT:-0.5}:$run/data/zh_poems"
          "$(awk -v p="${CPT_POEM_WEIGHT:-0.5}" -v e="${CPT_EN_WEIGHT:-0}" 'BEGIN { print 1 - p - e }'):$run/data/zh_prose")
[[ ${CPT_EN_WEIGHT:-0} != 0 ]] && cpt_data+=("$CPT_EN_WEIGHT:$run/data/en_ext")
if trained "$cpt" "$cpt_steps"; then skip "continued pretraining"; else
  # A fresh optimizer and schedule from the resized weights (the study's second stage is its own run).
  # shellcheck disable=SC2046
  train "$cpt" "$cpt_steps" pretrain --init-from "$resized/ckpt/$(cat "$resized/ckpt/latest")" --data "${cpt_data[@]}" \
    --seq-len "$seq" --micro-batch "$mb" $(sched "$cpt_steps" "$cpt_lr")
fi
done_stage transfer

stage 7 "instruction tuning"
sft=$run/sft
if [[ ! -s $run/sft_poems.jsonl ]]; then "$root/tools/sft-demo-data.sh" "$run/sft_poems.jsonl"; fi
if trained "$sft" "$sft_steps"; then skip "sft"; else
  # shellcheck disable=SC2046,SC2086
  train "$sft" "$sft_steps" sft --init-from "$cpt/ckpt/$(cat "$cpt/ckpt/latest")" \
    --data "$run/sft_poems.jsonl" "$mc_dir/sft_mc.jsonl" ${SFT_EXTRA:-} --template "$sft_template" \
    --seq-len "$sft_seq" --micro-batch "$sft_mb" $(sched "$sft_steps" "$sft_lr")
fi
done_stage sft

stage 8 "eval after the transfer: perplexity, questions, answers and code-switching"
if [[ -f $run/eval/cpt/results.json ]]; then skip "eval cpt"; else
  evaluate "$run/eval/cpt" --ckpt "$cpt" "${ppl_args[@]}"
fi
if [[ -f $run/eval/sft/results.json ]]; then skip "eval sft"; else
  judge=()
  [[ -n ${JUDGE_URL:-} ]] && judge=(--judge-url "$JUDGE_URL" --judge-model "${JUDGE_MODEL:?JUDGE_URL needs JUDGE_MODEL}")
  # shellcheck disable=SC2086
  evaluate "$run/eval/sft" --ckpt "$sft" "${ppl_args[@]/ppl,ceval/ppl,ceval,responses}" --responses "$responses" \
    --max-new-tokens "${RESP_TOKENS:-64}" --cs-allow ${CS_ALLOW:-none} "${judge[@]}"
fi
done_stage eval_after

stage 9 "summary"
python3 "$root/jobs/pipeline-summary.py" "$run" "$((SECONDS - t_job))"
