#include <hdf5.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "polyllama/ckpt/checkpoint.hpp"
#include "polyllama/ckpt/manifest.hpp"
#include "polyllama/parallel/agree.hpp"
#include "h5_common.hpp"

namespace polyllama {

using namespace h5;

namespace {

ShardSpec spec_of(const NamedTensor& nt) {
  if (!nt.shard.global_shape.empty()) {
    PL_CHECK(nt.shard.local_numel() == nt.tensor.numel(), nt.name + ": shard " + nt.shard.str() + " vs tensor " +
                                                              nt.tensor.shape_str());
    return nt.shard;
  }
  std::vector<int64_t> shape;
  for (int i = 0; i < nt.tensor.ndim; ++i) shape.push_back(nt.tensor.dim(i));
  return ShardSpec::full(shape);
}

// Every rank's block of one tensor, so all ranks check coverage identically (and fail together).
std::vector<ShardSpec> gather_blocks(const ShardSpec& mine, MPI_Comm comm) {
  constexpr int kFields = 14;  // ndim, global[4], offset[4], local[4], replica
  int64_t buf[kFields] = {};
  buf[0] = static_cast<int64_t>(mine.global_shape.size());
  for (size_t i = 0; i < mine.global_shape.size() && i < 4; ++i) {
    buf[1 + i] = mine.global_shape[i];
    buf[5 + i] = mine.global_offset[i];
    buf[9 + i] = mine.local_shape[i];
  }
  buf[13] = mine.replica_id;
  int n = 1;
  MPI_Comm_size(comm, &n);
  std::vector<int64_t> all(static_cast<size_t>(n * kFields));
  MPI_Allgather(buf, kFields, MPI_INT64_T, all.data(), kFields, MPI_INT64_T, comm);
  std::vector<ShardSpec> out;
  for (int r = 0; r < n; ++r) {
    const int64_t* b = all.data() + r * kFields;
    ShardSpec s;
    for (int64_t i = 0; i < b[0]; ++i) {
      s.global_shape.push_back(b[1 + i]);
      s.global_offset.push_back(b[5 + i]);
      s.local_shape.push_back(b[9 + i]);
    }
    s.replica_id = static_cast<int>(b[13]);
    out.push_back(s);
  }
  return out;
}

}  // namespace

void write_tensor_file(const std::string& path, const std::vector<NamedTensor>& tensors, const CheckpointMeta* meta,
                       MPI_Comm comm) {
  quiet();
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  // The blocks are checked (an agreed verdict: every rank sees every block) before the file exists, so that from
  // here on only HDF5 itself can fail.
  std::vector<ShardSpec> blocks;
  for (const NamedTensor& nt : tensors) {
    blocks.push_back(spec_of(nt));
    const std::string why = check_coverage(gather_blocks(blocks.back(), comm));
    if (!why.empty()) fail_runtime(path + ": the ranks' blocks of '" + nt.name + "' " + why, __FILE__, __LINE__);
  }
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  H5Id file(H5I_INVALID_HID, H5Fclose);
  try {
    file.id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    h5check(file >= 0, "cannot create the file");
    H5Id dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const NamedTensor& nt = tensors[i];
      write_dataset(file, dxpl, nt.name, mem_type(nt.tensor.dtype),
                    nt.tensor.dtype == DType::f64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE, blocks[i],
                    blocks[i].replica_id == 0, nt.tensor.data);
    }
    if (meta) {  // attributes are written collectively with the same value on every rank
      write_string_attr(file, "polyllama_format_version", std::to_string(meta->format_version));
      write_string_attr(file, "config", meta->config_json);
      write_string_attr(file, "trainer_state", meta->trainer_json);
      if (!meta->chat_template_json.empty()) write_string_attr(file, "chat_template", meta->chat_template_json);
      const int64_t n = static_cast<int64_t>(meta->tokenizer_bytes.size());
      write_dataset(file, dxpl, "tokenizer.model", H5T_NATIVE_UCHAR, H5T_STD_U8LE, ShardSpec::full({n}), rank == 0,
                    meta->tokenizer_bytes.data());
    }
    h5check(H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0, "flushing the file");
    // Closing writes the last metadata (on rank 0) and synchronizes the ranks: it can fail on a full disk too.
    const herr_t closed = H5Fclose(file.id);
    file.id = H5I_INVALID_HID;
    h5check(closed >= 0, "closing the file");
  } catch (const Error& e) {
    const std::string what = path + ": " + e.what() + ": " + error_detail(path);
    // Another rank may be inside the same collective HDF5 call (H5Dwrite's MPI_Allreduce, H5Fclose's barrier): no
    // agreement reaches it, so the job ends here. The unfinished file goes first, to give the space back, and with
    // it the whole step_XXXXXXXX.tmp of a checkpoint save (nothing publishes it once the job is aborted).
    if (size > 1) {
      namespace fs = std::filesystem;
      std::error_code ec;
      const fs::path dir = fs::path(path).parent_path();
      const std::string n = dir.filename().string();
      if (n.size() == 17 && n.rfind("step_", 0) == 0 && n.compare(13, 4, ".tmp") == 0)
        fs::remove_all(dir, ec);
      else
        fs::remove(path, ec);
      abort_collective(comm, kExitRuntime, what);
    }
    close_failed_file(file, path);
    throw Error(e.code(), what);
  }
}

void read_tensor_file(const std::string& path, const std::vector<NamedTensor>& into) {
  quiet();
  H5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file < 0) fail_input("cannot open checkpoint file " + path);
  // Every dataset in the file must be claimed (tokenizer.model is metadata).
  H5G_info_t info{};
  H5Gget_info(file, &info);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    char name[1024];
    H5Lget_name_by_idx(file, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
    const std::string n = name;
    if (n == "tokenizer.model") continue;
    if (std::none_of(into.begin(), into.end(), [&](const NamedTensor& t) { return t.name == n; }))
      fail_input(path + ": unexpected tensor '" + n + "' (not part of this model)");
  }
  for (const NamedTensor& nt : into) {
    const ShardSpec blk = spec_of(nt);
    H5Id ds(open_checked(file, path, nt.name, blk), H5Dclose);
    if (!read_block(ds, mem_type(nt.tensor.dtype), blk, nt.tensor.data))
      fail_input(path + ": tensor '" + nt.name + "' failed its checksum or could not be read (corrupt file?)");
  }
}

void verify_tensor_file(const std::string& path, const std::vector<NamedTensor>& written) {
  quiet();
  H5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file < 0) fail_runtime("cannot reopen " + path + " to verify it", __FILE__, __LINE__);
  std::vector<unsigned char> buf;
  for (const NamedTensor& nt : written) {
    const ShardSpec blk = spec_of(nt);
    if (blk.replica_id != 0) continue;
    H5Id ds(open_checked(file, path, nt.name, blk), H5Dclose);
    buf.resize(nt.tensor.bytes() + 1);
    // Reading runs every chunk through its Fletcher32 check; the bytes must also equal what was in memory.
    if (!read_block(ds, mem_type(nt.tensor.dtype), blk, buf.data()) ||
        std::memcmp(buf.data(), nt.tensor.data, nt.tensor.bytes()) != 0)
      fail_runtime(path + ": tensor '" + nt.name + "' does not read back intact after writing", __FILE__, __LINE__);
  }
}

CheckpointMeta read_meta(const std::string& model_h5) {
  // Whole files first: HDF5 never parses bytes the manifest does not vouch for.
  const std::string dir = std::filesystem::path(model_h5).parent_path().string();
  verify_checkpoint_files(dir.empty() ? "." : dir);
  quiet();
  H5Id file(H5Fopen(model_h5.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file < 0) fail_input("cannot open checkpoint file " + model_h5);
  CheckpointMeta m;
  const std::string ver = read_string_attr(file, "polyllama_format_version", model_h5);
  m.format_version = std::atoi(ver.c_str());
  if (m.format_version != kCheckpointFormatVersion)
    fail_input(model_h5 + ": checkpoint format version " + ver + ", this polyllama reads version " +
               std::to_string(kCheckpointFormatVersion));
  m.config_json = read_string_attr(file, "config", model_h5);
  m.trainer_json = read_string_attr(file, "trainer_state", model_h5);
  if (H5Aexists(file, "chat_template") > 0) m.chat_template_json = read_string_attr(file, "chat_template", model_h5);
  if (H5Lexists(file, "tokenizer.model", H5P_DEFAULT) <= 0) fail_input(model_h5 + ": tokenizer.model is missing");
  H5Id ds(H5Dopen2(file, "tokenizer.model", H5P_DEFAULT), H5Dclose);
  H5Id space(H5Dget_space(ds), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  m.tokenizer_bytes.resize(static_cast<size_t>(n));
  if (n > 0 && H5Dread(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.tokenizer_bytes.data()) < 0)
    fail_input(model_h5 + ": tokenizer.model failed its checksum");
  check_meta(m, model_h5);
  return m;
}

}  // namespace polyllama
