#pragma once
// HDF5 helpers shared by the checkpoint files (h5_file.cpp) and the streaming reader/writer (tensor_stream.cpp).
// Private to src/ckpt.
#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "polyllama/ckpt/checkpoint.hpp"

namespace polyllama::h5 {

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
inline void quiet() {
  static const bool once = [] { return H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0; }();
  (void)once;
}

inline void h5check(bool ok, const std::string& what) {
  if (!ok) fail_runtime("HDF5: " + what, __FILE__, __LINE__);
}

// Why the last HDF5 call failed, for a user: the innermost messages of HDF5's error stack and, when the device is
// full (errno, the MPI-IO message or the file system's free space says so), "no space left on device" with the free
// space of the file's directory. Call it right after the failing call.
std::string error_detail(const std::string& path);

// After a failed write of a file that only this process has open: releases the file's space first (HDF5 1.10 writes
// its metadata on close and, when that fails on a full disk, crashes later in MPI_Finalize), closes it and removes
// it. `file` becomes invalid.
void close_failed_file(H5Id& file, const std::string& path);

inline hid_t mem_type(DType t) { return t == DType::f64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT; }

inline void write_string_attr(hid_t obj, const char* name, const std::string& value) {
  H5Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type, std::max<size_t>(1, value.size()));
  H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Id attr(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  h5check(attr >= 0 && H5Awrite(attr, type, value.empty() ? "" : value.data()) >= 0,
          std::string("writing attribute ") + name);
}

inline std::string read_string_attr(hid_t obj, const char* name, const std::string& path) {
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

inline std::vector<hsize_t> to_h5(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

inline std::string shape_str(const std::vector<hsize_t>& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + ")";
}

// Creates a chunked dataset of full shape `dims`, Fletcher32 on every chunk (collective under MPI-IO). Chunks
// are whole rows, at most ~16 MiB: Fletcher32 needs chunking and checks each chunk on read. *empty: a zero dim.
inline hid_t create_dataset(hid_t file, const std::string& name, hid_t ftype, const std::vector<hsize_t>& dims,
                            bool* empty) {
  H5Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_obj_track_times(dcpl, false);  // no timestamps: the same state always writes the same bytes
  std::vector<hsize_t> chunk = dims;
  hsize_t row = 1;
  for (size_t i = 1; i < dims.size(); ++i) row *= std::max<hsize_t>(1, dims[i]);
  const hsize_t elem = H5Tget_size(ftype);
  if (!dims.empty()) chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], (hsize_t{16} << 20) / (row * elem)));
  *empty = false;
  for (hsize_t d : dims) *empty |= d == 0;
  if (!*empty) {
    H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    H5Pset_fletcher32(dcpl);
  }
  const hid_t ds = H5Dcreate2(file, name.c_str(), ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  h5check(ds >= 0, "creating dataset " + name);
  return ds;
}

// Creates a chunked, checksummed dataset of the full shape (collective) and writes this rank's block (or
// nothing, for other replicas) with collective I/O, which parallel HDF5 requires for filtered datasets.
inline void write_dataset(hid_t file, hid_t dxpl, const std::string& name, hid_t mtype, hid_t ftype,
                          const ShardSpec& blk, bool writes, const void* data) {
  const std::vector<hsize_t> dims = to_h5(blk.global_shape);
  bool empty = false;
  H5Id ds(create_dataset(file, name, ftype, dims, &empty), H5Dclose);
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
inline hid_t open_checked(hid_t file, const std::string& path, const std::string& name, const ShardSpec& blk) {
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
inline bool read_block(hid_t ds, hid_t mtype, const ShardSpec& blk, void* out) {
  if (blk.local_numel() == 0) return true;
  const std::vector<hsize_t> off = to_h5(blk.global_offset), cnt = to_h5(blk.local_shape);
  H5Id fspace(H5Dget_space(ds), H5Sclose);
  H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr);
  H5Id mspace(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr), H5Sclose);
  return H5Dread(ds, mtype, mspace, fspace, H5P_DEFAULT, out) >= 0;
}


}  // namespace polyllama::h5
