#!/usr/bin/env bash
# `polyllama doctor`: one process says what the node offers (one line each for MPI, HDF5, OpenBLAS,
# SentencePiece, CUDA; the collective skipped) and exits 0; --json is one JSON object whose fields agree; under
# mpirun -np 2 the ranks, the launcher and the checked MPI_Allreduce are reported, and --check-dir writes and reads
# an HDF5 file with both ranks through MPI-IO; a Slurm or PBS job is recognised from its environment; without a
# CUDA device --require-cuda exits 1 naming the reason (with one, 0); a missing --check-dir exits 1.
# Usage: test_doctor.sh POLYLLAMA_BINARY
source "$(dirname "$0")/lib.sh" "$@"
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe --bind-to none)
# field FILE EXPR: a Python expression over the JSON object `d` read from FILE.
field() { python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# ---- one process: the lines ----
"$bin" doctor > "$work/one.txt" 2> "$work/one.err"; rc=$?
cat "$work/one.txt"
[[ $rc -eq 0 ]] && ok "doctor exits 0 on this machine" || bad "doctor exited $rc: $(cat "$work/one.err")"
for label in polyllama MPI HDF5 OpenBLAS SentencePiece CUDA collective ready; do
  [[ $(grep -c "^$label " "$work/one.txt") -eq 1 ]] && ok "one '$label' line" || bad "no single '$label' line"
done
grep -q "^MPI .*1 rank on 1 node, started without mpirun or srun" "$work/one.txt" && ok "MPI line: 1 rank, no launcher" \
  || bad "MPI line: $(grep '^MPI' "$work/one.txt")"
grep -q "^HDF5 .*parallel (MPI-IO)" "$work/one.txt" && ok "HDF5 is parallel" || bad "HDF5 line: $(grep '^HDF5' "$work/one.txt")"
grep -q "^OpenBLAS .*sgemm ok" "$work/one.txt" && ok "OpenBLAS sgemm checked" || bad "OpenBLAS line"
grep -q "^collective .*skipped" "$work/one.txt" && ok "collective skipped on one rank" || bad "collective line"

# ---- --json ----
"$bin" doctor --json > "$work/one.json" && ok "doctor --json exits 0" || bad "doctor --json"
[[ $(wc -l < "$work/one.json") -eq 1 ]] && ok "--json: one line" || bad "--json printed $(wc -l < "$work/one.json") lines"
[[ $(field "$work/one.json" 'd["ready"] and d["mpi"]["ranks"] == 1 and d["hdf5"]["parallel"] and not d["problems"]') == True ]] \
  && ok "--json: ready, 1 rank, parallel HDF5, no problems" || bad "--json: $(cat "$work/one.json")"
blas='d["openblas"]["sgemm_check"] == "ok" and d["openblas"]["threading"] != ""'
[[ $(field "$work/one.json" "$blas"' and d["sentencepiece"]["version"] != ""') == True ]] \
  && ok "--json: OpenBLAS and SentencePiece" || bad "--json openblas/sentencepiece: $(cat "$work/one.json")"
[[ $(field "$work/one.json" '"collective" in d and "cuda" in d and d["mpi"]["library"] != ""') == True ]] \
  && ok "--json: MPI library, CUDA and collective fields" || bad "--json fields: $(cat "$work/one.json")"

# ---- the batch system, from its environment ----
SLURM_JOB_ID=4242 "$bin" doctor --json > "$work/slurm.json" \
  && [[ $(field "$work/slurm.json" 'd["mpi"]["scheduler"] + " " + d["mpi"]["job_id"]') == "slurm 4242" ]] \
  && ok "a Slurm job is recognised" || bad "Slurm: $(cat "$work/slurm.json")"
PBS_JOBID=17.pbsserver "$bin" doctor > "$work/pbs.txt" && grep -q "in PBS job 17.pbsserver" "$work/pbs.txt" \
  && ok "a PBS job is recognised" || bad "PBS: $(grep '^MPI' "$work/pbs.txt")"

# ---- two ranks: the collective and a parallel HDF5 write ----
"${mpi[@]}" -np 2 "$bin" doctor --check-dir "$work" > "$work/two.txt" 2> "$work/two.err"; rc=$?
cat "$work/two.txt"
[[ $rc -eq 0 ]] && ok "mpirun -np 2 doctor exits 0" || bad "mpirun -np 2 doctor exited $rc: $(cat "$work/two.err")"
[[ $(grep -c "^MPI " "$work/two.txt") -eq 1 ]] && ok "rank 0 alone reports" || bad "$(grep -c '^MPI ' "$work/two.txt") MPI lines"
grep -q "^MPI .*2 ranks on 1 node, launched by mpirun" "$work/two.txt" && ok "MPI line: 2 ranks by mpirun" \
  || bad "MPI line: $(grep '^MPI' "$work/two.txt")"
grep -q "^collective *MPI_Allreduce over 2 ranks: ok" "$work/two.txt" && ok "the 2-rank MPI_Allreduce checks out" \
  || bad "collective: $(grep '^collective' "$work/two.txt")"
grep -q "^HDF5 .*parallel write: ok" "$work/two.txt" && ok "--check-dir: both ranks wrote and read back one HDF5 file" \
  || bad "HDF5 write: $(grep '^HDF5' "$work/two.txt")"
[[ -z $(ls -A "$work" | grep polyllama-doctor) ]] && ok "--check-dir leaves no file behind" || bad "scratch file left"
"${mpi[@]}" -np 2 "$bin" doctor --json > "$work/two.json" \
  && [[ $(field "$work/two.json" 'd["mpi"]["ranks"] == 2 and d["mpi"]["launcher"] == "mpirun"') == True ]] \
  && [[ $(field "$work/two.json" 'd["collective"]["result"]') == ok ]] \
  && ok "mpirun -np 2 doctor --json: 2 ranks, collective ok" || bad "-np 2 --json: $(cat "$work/two.json")"

# ---- not ready: exit 1 with the reason ----
if [[ $(field "$work/one.json" 'len(d["cuda"]["devices"])') -eq 0 ]]; then
  expect_fail 1 "not ready: .*--require-cuda: " -- "$bin" doctor --require-cuda
  "${mpi[@]}" -np 2 "$bin" doctor --require-cuda --json > "$work/nocuda.json" 2>/dev/null; rc=$?
  once='not d["ready"] and len(d["problems"]) == 1 and "(ranks 0, 1: 2 of 2;" in d["problems"][0]'
  [[ $rc -ne 0 && $(field "$work/nocuda.json" "$once") == True ]] \
    && ok "mpirun -np 2 --require-cuda: not ready, the problem once for both ranks, exit $rc" \
    || bad "-np 2 --require-cuda: rc $rc $(cat "$work/nocuda.json")"
else
  "$bin" doctor --require-cuda > /dev/null && ok "--require-cuda with a CUDA device: exit 0" || bad "--require-cuda with a device"
fi
expect_fail 1 "check-dir" -- "$bin" doctor --check-dir "$work/missing"
finish
