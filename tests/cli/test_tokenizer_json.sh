#!/usr/bin/env bash
# tokenizer.json from `polyllama convert --to hf` gives SentencePiece's ids: checkpoints made with LLaMA-2's real
# tokenizer, with that tokenizer extended by `tokenizer extend` on the Chinese corpus, and with a unigram model
# trained here are exported, and tests/reference/hf_tokenizer_json_check.py loads each tokenizer.json with the
# Hugging Face `tokenizers` library and compares its ids with Debian's spm_encode, and its decoding with the text,
# on every line of the shared English and Chinese corpora (a few thousand lines) plus whitespace and rare-character
# edge cases. A tokenizer tokenizers cannot reproduce exports without tokenizer.json, with a warning.
# Skips (77) without ../shared/data, spm_encode, or a Python with `tokenizers` (POLYLLAMA_PYTHON, else python3).
# Usage: test_tokenizer_json.sh POLYLLAMA_BINARY [SHARED_DATA_DIR]
source "$(dirname "$0")/lib.sh" "$@"
here=$(cd "$(dirname "$0")" && pwd)
data=${2:-$here/../../../shared/data}
check="$here/../reference/hf_tokenizer_json_check.py"
py=${POLYLLAMA_PYTHON:-python3}

skip() { echo "skip: $1"; exit 77; }
[[ -d $data ]] || skip "no shared data at $data"
base=""
for t in "$data/tokenizer.model" "$data/tokenizers/llama2-tokenizer.model"; do [[ -f $t ]] && base=$t && break; done
[[ -n $base ]] || skip "no LLaMA tokenizer in $data"
en="$data/corpora/en/tinyshakespeare_input.txt"
zh=("$data"/corpora/zh/*.txt)
[[ -f $en && -f ${zh[0]} ]] || skip "no English and Chinese corpora in $data/corpora"
command -v spm_encode >/dev/null || skip "no spm_encode (Debian's sentencepiece)"
"$py" -c "import tokenizers" 2>/dev/null || skip "$py cannot import tokenizers (pip install tokenizers, or set POLYLLAMA_PYTHON)"

# The sample: 2000 English lines, 2000 Chinese lines, and edge cases SentencePiece handles in its own way (leading,
# repeated and trailing spaces, tabs, characters outside the vocabulary that fall back to bytes).
head -n 2000 "$en" > "$work/en.txt"
cat "${zh[@]}" | head -n 2000 > "$work/zh.txt"
printf '%s\n' " leading space" "   three leading spaces" "two  spaces   three    four" "trailing space " \
  "tab	inside" "	leading tab" "                 seventeen spaces" "emoji 🦙 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢" "ẞ ǅ ﬁ ① ½ ™" \
  "罕见字：龘靐齉爨" "mixed 中文 and English 123456" "" > "$work/edge.txt"
texts=("$work/en.txt" "$work/zh.txt" "$work/edge.txt")

# export NAME MODEL: a one-layer checkpoint with this tokenizer, exported to $work/NAME-hf
export_with() {
  "$bin" init --run-dir "$work/$1-run" --tokenizer "$2" --preset tiny --num-hidden-layers 1 > /dev/null 2>&1 \
    && "$bin" convert --from ckpt "$work/$1-run" --to hf "$work/$1-hf" > "$work/$1.log" 2>&1
}
# compare NAME MODEL_TYPE: the check script on the export (prints the figures)
compare() {
  "$py" "$check" "$work/$1-hf" "${texts[@]}" --label "$1" --model "$2" > "$work/$1.check" 2>&1
  local rc=$?
  cat "$work/$1.check"
  [[ $rc -eq 0 ]]
}

export_with llama2 "$base" && [[ -s $work/llama2-hf/tokenizer.json ]] && ok "LLaMA-2 tokenizer exports tokenizer.json" \
  || bad "LLaMA-2 export: $(cat "$work/llama2.log")"
compare llama2 BPE && ok "LLaMA-2: tokenizers gives SentencePiece's ids and decodes back" || bad "LLaMA-2 tokenizer.json"

"$bin" tokenizer extend --base "$base" --train-on "$work/zh.txt" --new-pieces 6000 --out "$work/ext.model" \
  --json > "$work/extend.json" 2> "$work/extend.log" && ok "tokenizer extend on the Chinese corpus" \
  || bad "extend: $(cat "$work/extend.json" "$work/extend.log")"
export_with extended "$work/ext.model" && [[ -s $work/extended-hf/tokenizer.json ]] \
  && ok "extended tokenizer exports tokenizer.json" || bad "extended export: $(cat "$work/extended.log")"
# LLaMA 2's lowest scores are -1e9, where float32 steps are 64 apart: extend gives each new piece a score strictly
# below the one before (a float step where a whole one rounds away), so no scores tie and a merge list is exact.
! grep -q "share their score" "$work/extended.log" && ok "the extended tokenizer has no tied scores" \
  || bad "tied scores: $(grep "share their score" "$work/extended.log")"
compare extended BPE && ok "extended: tokenizers gives SentencePiece's ids and decodes back" \
  || bad "extended tokenizer.json"

"$bin" tokenizer train --input "$work/en.txt" --input "$work/zh.txt" --vocab-size 6000 --spm model_type=unigram \
  --out "$work/uni.model" > "$work/uni_train.log" 2>&1 && ok "unigram tokenizer trained" \
  || bad "unigram training: $(cat "$work/uni_train.log")"
export_with unigram "$work/uni.model" && [[ -s $work/unigram-hf/tokenizer.json ]] \
  && ok "unigram tokenizer exports tokenizer.json" || bad "unigram export: $(cat "$work/unigram.log")"
compare unigram Unigram && ok "unigram: tokenizers gives SentencePiece's ids and decodes back" \
  || bad "unigram tokenizer.json"

# A normalizer tokenizers has no exact equivalent of: no tokenizer.json (a stale one is removed), a warning, and
# every other file as before.
"$bin" tokenizer train --input "$work/en.txt" --vocab-size 500 --spm normalization_rule_name=nmt_nfkc \
  --spm remove_extra_whitespaces=true --out "$work/nfkc.model" > /dev/null 2>&1
echo '{}' > "$work/nfkc-hf-stale"
"$bin" init --run-dir "$work/nfkc-run" --tokenizer "$work/nfkc.model" --preset tiny --num-hidden-layers 1 > /dev/null 2>&1
mkdir -p "$work/nfkc-hf" && cp "$work/nfkc-hf-stale" "$work/nfkc-hf/tokenizer.json"
"$bin" convert --from ckpt "$work/nfkc-run" --to hf "$work/nfkc-hf" > "$work/nfkc.log" 2>&1 \
  && [[ ! -e $work/nfkc-hf/tokenizer.json && -s $work/nfkc-hf/tokenizer_config.json && -s $work/nfkc-hf/tokenizer.model ]] \
  && grep -q "no tokenizer.json written.*precompiled charsmap.*removed the tokenizer.json" "$work/nfkc.log" \
  && ok "an NFKC tokenizer exports without tokenizer.json, saying why" || bad "NFKC export: $(cat "$work/nfkc.log")"
finish
