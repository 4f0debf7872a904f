#pragma once
// Checkpoints per DESIGN.md section 4: ckpt/step_XXXXXXXX/{model.h5, optim.h5, manifest.json} with Hugging Face
// tensor names, full logical shapes, Fletcher32 checksums on every dataset, the config, trainer state and tokenizer
// inside, and a SHA-256 of every file in manifest.json (ckpt/manifest.hpp). A save goes to step_XXXXXXXX.tmp, is
// read back and verified, gets its manifest, is renamed, and only then does `latest` move: an interrupted or failed
// save never replaces the last good checkpoint.
#include <cstdint>
#include <string>
#include <vector>

#include <mpi.h>

#include "polyllama/core/shard_spec.hpp"
#include "polyllama/core/tensor.hpp"

namespace polyllama {

constexpr int kCheckpointFormatVersion = 1;

struct NamedTensor {
  std::string name;
  Tensor tensor;    // this rank's block
  ShardSpec shard;  // where the block sits in the full tensor; empty global_shape: the block is the whole tensor
};

struct CheckpointMeta {
  std::string config_json;      // Hugging Face config.json of the model
  std::string trainer_json;     // step, consumed samples/tokens, schedule, seeds (empty for a fresh init)
  std::string tokenizer_bytes;  // the SentencePiece .model file
  std::string chat_template_json;  // the prompt template `sft` trained with (optional; `generate --chat` uses it)
  int format_version = kCheckpointFormatVersion;
};

// Writes one HDF5 file of full logical tensors (and, for model.h5, the metadata) with every rank of `comm`
// together through MPI-IO: each rank passes the same names in the same order and writes its block. The blocks
// of each tensor are checked to tile it exactly before anything is written.
void write_tensor_file(const std::string& path, const std::vector<NamedTensor>& tensors, const CheckpointMeta* meta,
                       MPI_Comm comm = MPI_COMM_SELF);
// Reads this rank's block of every tensor of `into` by name, checking the full shape; a missing, unexpected or
// corrupt dataset is an error naming the file and the tensor. Values convert to each tensor's dtype. Any
// layout can read a file written by any other.
void read_tensor_file(const std::string& path, const std::vector<NamedTensor>& into);
// Verifies the step directory's files against its manifest.json first (verify_checkpoint_files), then reads the
// attributes and checks them (check_meta).
CheckpointMeta read_meta(const std::string& model_h5);
// The attributes as a load reads them: config (and chat_template, when set) JSON objects; trainer_state, when set,
// an object with the counters resume reads (step, consumed_samples/tokens, optimizer_steps, the batch). Fails with
// exit 1 naming model_h5 and the attribute (and field).
void check_meta(const CheckpointMeta& m, const std::string& model_h5);
// Reads back the blocks this rank wrote (replica 0) through their checksums and compares them with memory;
// fails naming the first tensor that differs.
void verify_tensor_file(const std::string& path, const std::vector<NamedTensor>& written);

// Saves a complete checkpoint under ckpt_root with every rank of `comm` and points ckpt_root/latest at it;
// returns its directory.
std::string save_checkpoint(const std::string& ckpt_root, int64_t step, const std::vector<NamedTensor>& model,
                            const std::vector<NamedTensor>& optim, const CheckpointMeta& meta,
                            MPI_Comm comm = MPI_COMM_SELF);
// The two halves of save_checkpoint, for writers that stream their files (resize-vocab): a fresh, empty
// ckpt_root/step_XXXXXXXX.tmp (returned); then, once its files are written and verified, the rename to
// step_XXXXXXXX and the move of `latest` (returns the final directory).
std::string begin_checkpoint(const std::string& ckpt_root, int64_t step, MPI_Comm comm = MPI_COMM_SELF);
std::string publish_checkpoint(const std::string& ckpt_root, int64_t step, MPI_Comm comm = MPI_COMM_SELF);
// The directory `latest` names under ckpt_root, or "" when there is none.
std::string latest_checkpoint(const std::string& ckpt_root);
// What a user may name as a checkpoint: a step directory (holds model.h5), a run directory (RUN/ckpt/latest) or
// a checkpoint root (latest); fails naming `what` (the option) and path otherwise.
std::string resolve_step_dir(const std::string& path, const std::string& what = "");
// Keeps the newest `keep` complete step directories (0 keeps all), and never deletes the one `latest` names: the
// newest checkpoint known good (a save refuses non-finite tensors and training moves `latest` only after a good
// step), even when newer step directories exist. The steps in `kept` (pretrain --save-at: the budgets a study
// reads as checkpoints of one run) are never deleted and do not count toward `keep`.
void prune_checkpoints(const std::string& ckpt_root, int keep, const std::vector<int64_t>& kept = {});

// The index of the first tensor holding a NaN or an infinity in any rank's block, -1 when every value is finite.
// Collective over `comm`: each rank checks its own blocks and the ranks agree on the lowest index, so every rank
// passes the same names in the same order (as write_tensor_file asks) and every rank can name the tensor.
int64_t first_non_finite(const std::vector<NamedTensor>& tensors, MPI_Comm comm = MPI_COMM_SELF);

// The complete step directories under ckpt_root (step_XXXXXXXX, without .tmp/.old), oldest first, as names.
std::vector<std::string> list_step_dirs(const std::string& ckpt_root);
// Removes the step_XXXXXXXX.tmp directories of saves that were killed before their rename; returns one line per
// directory removed (its name and size) for the log. Call it only while no other process can be saving there (the
// training verbs hold the run directory's lock).
std::vector<std::string> remove_stale_tmp_dirs(const std::string& ckpt_root);
// The step directory a run resumes from: the one `latest` names when it is intact (its files match manifest.json,
// its model.h5 metadata loads and, for a trained checkpoint, optim.h5 is there), else the newest intact step_XXXXXXXX, and then, when
// `repair` (one process only), `latest` is rewritten to name it. `note` says what was wrong and what was done
// (empty when `latest` was fine or there is no checkpoint at all). "" when no step directory is intact.
std::string find_resume_checkpoint(const std::string& ckpt_root, bool repair, std::string* note);

}  // namespace polyllama
