#!/usr/bin/env bash
# Installs everything polyllama builds and tests with, from Debian's apt alone. Idempotent: a machine that has
# every package installs nothing. Usage: tools/install-deps.sh [--with-reference]
#   --with-reference  also installs Debian's PyTorch (python3-torch), the independent reference that tests
#                     regenerate their fixtures with and the CPU benchmark runs side by side, and Lmod, which
#                     the install test loads the generated modulefile with, and Slurm and munge, which
#                     tests/cli/test_slurm.sh starts a one-node cluster of its own with, and clang-14 with
#                     libFuzzer for the sanitizer stage.
set -euo pipefail
pkgs=(cmake g++ make pkg-config
      openmpi-bin libopenmpi-dev libhdf5-openmpi-dev
      libsentencepiece-dev sentencepiece libcli11-dev libgtest-dev nlohmann-json3-dev
      libopenblas-dev libopenblas0-openmp libopenblas-openmp-dev zlib1g-dev
      libcurl4-openssl-dev libcpp-httplib-dev
      fortunes-zh bible-kjv bible-kjv-text python3   # the main job's texts (bible-kjv reads bible-kjv-text's
                                                     # compressed file) and its summary (jobs/pipeline.sh)
      python3-matplotlib)                            # the study's plots (jobs/study, tools/study-report.py)
if [[ "${1:-}" == "--with-reference" ]]; then
  pkgs+=(python3 python3-torch python3-numpy python3-venv time lmod slurm-wlm munge
         clang-14 libclang-rt-14-dev libomp-14-dev)  # the sanitizer build and the fuzz targets (tools/sanitize-tests.sh)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then exit 0; fi
echo "install-deps: installing ${missing[*]}"
sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get -o DPkg::Lock::Timeout=600 update -q
$sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
