#include <hdf5.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "polyllama/ckpt/checkpoint.hpp"

namespace polyllama {

namespace {

// RAII for HDF5 ids, so an error thrown mid-write closes what is open.
struct H5Id {
  hid_t id = H5I_INVALID_HID;
  herr_t (*close)(hid_t) = nullptr;
  H5Id(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  ~H5Id() {
    if (id >= 0 && close) close(id);
  }
  operator hid_t() const { return id; }
};

// HDF5 prints its own error stack by default; errors here become polyllama::Error with a file and tensor.
void quiet() {
  static const bool once = [] { return H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0; }();
  (void)once;
}

void h5check(bool ok, const std::string& what) {
  if (!ok) fail_runtime("HDF5: " + what, __FILE__, __LINE__);
}

hid_t mem_type(DType t) { return t == DType::f64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT; }

void write_string_attr(hid_t obj, const char* name, const std::string& value) {
  H5Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type, std::max<size_t>(1, value.size()));
  H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Id attr(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  h5check(attr >= 0 && H5Awrite(attr, type, value.empty() ? "" : value.data()) >= 0,
          std::string("writing attribute ") + name);
}

std::string read_string_attr(hid_t obj, const char* name, const std::string& path) {
  if (H5Aexists(obj, name) <= 0) fail_input(path + ": attribute '" + name + "' is missing");
  H5Id attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  H5Id type(H5Aget_type(attr), H5Tclose);
  const size_t n = H5Tget_size(type);
  std::string s(n, '\0');
  H5Id mtype(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mtype, n);
  h5check(H5Aread(attr, mtype, s.data()) >= 0, std::string("reading attribute ") + name);
  s.resize(std::strlen(s.c_str()));
  return s;
}

std::vector<hsize_t> to_h5(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

std::string shape_str(const std::vector<hsize_t>& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + ")";
}

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

// Creates a chunked, checksummed dataset of the full shape (collective) and writes this rank's block (or
// nothing, for other replicas) with collective I/O, which parallel HDF5 requires for filtered datasets.
void write_dataset(hid_t file, hid_t dxpl, const std::string& name, hid_t mtype, hid_t ftype, const ShardSpec& blk,
                   bool writes, const void* data) {
  const std::vector<hsize_t> dims = to_h5(blk.global_shape);
  H5Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_obj_track_times(dcpl, false);  // no timestamps: the same state always writes the same bytes
  // Chunks of at most ~16 MiB, whole rows: Fletcher32 needs chunking and checks each chunk on read.
  std::vector<hsize_t> chunk = dims;
  hsize_t row = 1;
  for (size_t i = 1; i < dims.size(); ++i) row *= std::max<hsize_t>(1, dims[i]);
  const hsize_t elem = H5Tget_size(ftype);
  if (!dims.empty()) chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], (hsize_t{16} << 20) / (row * elem)));
  bool empty = false;
  for (hsize_t d : dims) empty |= d == 0;
  if (!empty) {
    H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    H5Pset_fletcher32(dcpl);
  }
  H5Id ds(H5Dcreate2(file, name.c_str(), ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
  h5check(ds >= 0, "creating dataset " + name);
  if (empty) return;
  const std::vector<hsize_t> off = to_h5(blk.global_offset), cnt = to_h5(blk.local_shape);
  H5Id fspace(H5Dget_space(ds), H5Sclose);
  H5Id mspace(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr), H5Sclose);
  if (writes && blk.local_numel() > 0) {
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr);
  } else {
    H5Sselect_none(fspace);
    H5Sselect_none(mspace);
  }
  h5check(H5Dwrite(ds, mtype, mspace, fspace, dxpl, data) >= 0, "writing dataset " + name);
}

// Opens a dataset and checks its full shape against the block's global shape.
hid_t open_checked(hid_t file, const std::string& path, const std::string& name, const ShardSpec& blk) {
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) <= 0) fail_input(path + ": tensor '" + name + "' is missing");
  hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  H5Id space(H5Dget_space(ds), H5Sclose);
  const int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(nd, 0)));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  if (dims != to_h5(blk.global_shape)) {
    H5Dclose(ds);
    fail_input(path + ": tensor '" + name + "' has shape " + shape_str(dims) + ", expected " +
               shape_str(to_h5(blk.global_shape)));
  }
  return ds;
}

// Reads this rank's block of an open dataset into `out` (converted to mtype).
bool read_block(hid_t ds, hid_t mtype, const ShardSpec& blk, void* out) {
  if (blk.local_numel() == 0) return true;
  const std::vector<hsize_t> off = to_h5(blk.global_offset), cnt = to_h5(blk.local_shape);
  H5Id fspace(H5Dget_space(ds), H5Sclose);
  H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr);
  H5Id mspace(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr), H5Sclose);
  return H5Dread(ds, mtype, mspace, fspace, H5P_DEFAULT, out) >= 0;
}

}  // namespace

void write_tensor_file(const std::string& path, const std::vector<NamedTensor>& tensors, const CheckpointMeta* meta,
                       MPI_Comm comm) {
  quiet();
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  H5Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose);
  h5check(file >= 0, "cannot create " + path);
  H5Id dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
  for (const NamedTensor& nt : tensors) {
    const ShardSpec blk = spec_of(nt);
    const std::string why = check_coverage(gather_blocks(blk, comm));
    if (!why.empty()) fail_runtime(path + ": the ranks' blocks of '" + nt.name + "' " + why, __FILE__, __LINE__);
    write_dataset(file, dxpl, nt.name, mem_type(nt.tensor.dtype),
                  nt.tensor.dtype == DType::f64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE, blk, blk.replica_id == 0,
                  nt.tensor.data);
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
  h5check(H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0, "flushing " + path);
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
  return m;
}

}  // namespace polyllama
