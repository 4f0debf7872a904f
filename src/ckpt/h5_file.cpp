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

void write_dataset(hid_t file, const std::string& name, hid_t mtype, hid_t ftype, const std::vector<hsize_t>& dims,
                   const void* data) {
  H5Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_obj_track_times(dcpl, false);  // no timestamps: the same state always writes the same bytes
  // Chunks of at most ~16 MiB, whole rows: Fletcher32 needs chunking and checks each chunk on read.
  std::vector<hsize_t> chunk = dims;
  hsize_t row = 1;
  for (size_t i = 1; i < dims.size(); ++i) row *= dims[i];
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
  if (!empty) h5check(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, "writing dataset " + name);
}

}  // namespace

void write_tensor_file(const std::string& path, const std::vector<NamedTensor>& tensors, const CheckpointMeta* meta) {
  quiet();
  H5Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  h5check(file >= 0, "cannot create " + path);
  for (const NamedTensor& nt : tensors) {
    std::vector<hsize_t> dims;
    for (int i = 0; i < nt.tensor.ndim; ++i) dims.push_back(static_cast<hsize_t>(nt.tensor.dim(i)));
    write_dataset(file, nt.name, mem_type(nt.tensor.dtype), nt.tensor.dtype == DType::f64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE,
                  dims, nt.tensor.data);
  }
  if (meta) {
    write_string_attr(file, "polyllama_format_version", std::to_string(meta->format_version));
    write_string_attr(file, "config", meta->config_json);
    write_string_attr(file, "trainer_state", meta->trainer_json);
    write_dataset(file, "tokenizer.model", H5T_NATIVE_UCHAR, H5T_STD_U8LE, {meta->tokenizer_bytes.size()},
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
    if (H5Lexists(file, nt.name.c_str(), H5P_DEFAULT) <= 0) fail_input(path + ": tensor '" + nt.name + "' is missing");
    H5Id ds(H5Dopen2(file, nt.name.c_str(), H5P_DEFAULT), H5Dclose);
    H5Id space(H5Dget_space(ds), H5Sclose);
    const int nd = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> dims(static_cast<size_t>(std::max(nd, 0)));
    H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    bool match = nd == nt.tensor.ndim;
    for (int i = 0; match && i < nd; ++i) match = static_cast<int64_t>(dims[static_cast<size_t>(i)]) == nt.tensor.dim(i);
    if (!match) {
      std::string got = "(";
      for (size_t i = 0; i < dims.size(); ++i) got += (i ? ", " : "") + std::to_string(dims[i]);
      fail_input(path + ": tensor '" + nt.name + "' has shape " + got + "), expected " + nt.tensor.shape_str());
    }
    if (H5Dread(ds, mem_type(nt.tensor.dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, nt.tensor.data) < 0)
      fail_input(path + ": tensor '" + nt.name + "' failed its checksum or could not be read (corrupt file?)");
  }
}

void verify_tensor_file(const std::string& path) {
  quiet();
  H5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file < 0) fail_runtime("cannot reopen " + path + " to verify it", __FILE__, __LINE__);
  H5G_info_t info{};
  H5Gget_info(file, &info);
  std::vector<unsigned char> buf;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    char name[1024];
    H5Lget_name_by_idx(file, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
    H5Id ds(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose);
    H5Id type(H5Dget_type(ds), H5Tclose);
    H5Id space(H5Dget_space(ds), H5Sclose);
    buf.resize(static_cast<size_t>(H5Sget_simple_extent_npoints(space)) * H5Tget_size(type) + 1);
    // Reading runs every chunk through its Fletcher32 check.
    if (H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
      fail_runtime(path + ": tensor '" + name + "' does not read back intact after writing", __FILE__, __LINE__);
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
