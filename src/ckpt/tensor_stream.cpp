#include "polyllama/ckpt/tensor_stream.hpp"

#include "h5_common.hpp"

namespace polyllama {

using namespace h5;

namespace {

// Word-wise FNV-style hash of the rows as written: a mismatch on read-back means the file is not what was meant.
struct RowHash {
  uint64_t h = 0xcbf29ce484222325ULL;
  void add(const float* data, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      uint32_t w;
      std::memcpy(&w, data + i, 4);
      h = (h ^ w) * 0x100000001b3ULL;
    }
  }
};

int64_t row_length(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

// Selects rows [row0, row0 + rows) of a dataset of `dims` in its file space.
void select_rows(hid_t fspace, const std::vector<hsize_t>& dims, int64_t row0, int64_t rows) {
  std::vector<hsize_t> off(dims.size(), 0), cnt = dims;
  off[0] = static_cast<hsize_t>(row0);
  cnt[0] = static_cast<hsize_t>(rows);
  H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr);
}

}  // namespace

// ---- reader ----

struct TensorFileReader::Impl {
  hid_t file = H5I_INVALID_HID;
  struct Entry {
    hid_t ds;
    std::vector<int64_t> shape;
    int64_t chunk_rows;
  };
  std::map<std::string, Entry> tensors;
  ~Impl() {
    for (auto& [n, e] : tensors) H5Dclose(e.ds);
    if (file >= 0) H5Fclose(file);
  }
};

TensorFileReader::TensorFileReader(const std::string& path) : impl_(std::make_unique<Impl>()), path_(path) {
  quiet();
  impl_->file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (impl_->file < 0) fail_input("cannot open checkpoint file " + path);
  H5G_info_t info{};
  H5Gget_info(impl_->file, &info);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    char name[1024];
    H5Lget_name_by_idx(impl_->file, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
    if (std::string(name) == "tokenizer.model") continue;
    // A chunk cache that holds two chunks (HDF5's default is 1 MiB, under one checkpoint chunk).
    H5Id dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
    H5Pset_chunk_cache(dapl, 521, size_t{40} << 20, 1.0);
    const hid_t ds = H5Dopen2(impl_->file, name, dapl);
    h5check(ds >= 0, path + ": opening " + name);
    H5Id space(H5Dget_space(ds), H5Sclose);
    const int nd = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> dims(static_cast<size_t>(std::max(nd, 0)));
    H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    Impl::Entry e{ds, {dims.begin(), dims.end()}, 1};
    H5Id dcpl(H5Dget_create_plist(ds), H5Pclose);
    if (nd > 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) {
      std::vector<hsize_t> chunk(dims.size());
      H5Pget_chunk(dcpl, nd, chunk.data());
      e.chunk_rows = static_cast<int64_t>(chunk[0]);
    }
    impl_->tensors.emplace(name, std::move(e));
  }
}

TensorFileReader::~TensorFileReader() = default;

std::vector<std::string> TensorFileReader::names() const {
  std::vector<std::string> out;
  for (const auto& [n, e] : impl_->tensors) out.push_back(n);
  return out;
}

std::vector<int64_t> TensorFileReader::shape(const std::string& name) const {
  auto it = impl_->tensors.find(name);
  if (it == impl_->tensors.end()) fail_input(path_ + ": tensor '" + name + "' is missing");
  return it->second.shape;
}

int64_t TensorFileReader::chunk_rows(const std::string& name) const {
  shape(name);
  return impl_->tensors.at(name).chunk_rows;
}

void TensorFileReader::read_rows(const std::string& name, int64_t row0, int64_t rows, float* out) const {
  const std::vector<int64_t> sh = shape(name);
  const int64_t total = sh.empty() ? 1 : sh[0];
  PL_CHECK(row0 >= 0 && rows >= 0 && row0 + rows <= total, path_ + ": rows of " + name + " out of range");
  if (rows == 0) return;
  const hid_t ds = impl_->tensors.at(name).ds;
  H5Id fspace(H5Dget_space(ds), H5Sclose);
  const std::vector<hsize_t> dims = to_h5(sh);
  std::vector<hsize_t> cnt = dims;
  if (!dims.empty()) {
    select_rows(fspace, dims, row0, rows);
    cnt[0] = static_cast<hsize_t>(rows);
  }
  H5Id mspace(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr),
              H5Sclose);
  if (H5Dread(ds, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, out) < 0)
    fail_input(path_ + ": tensor '" + name + "' failed its checksum or could not be read (corrupt file?)");
}

// ---- writer ----

struct TensorFileWriter::Impl {
  std::string path;
  hid_t file = H5I_INVALID_HID;
  // The tensor being written: rows go through a buffer of whole chunks, so every write fills whole chunks
  // (a partial chunk of a filtered dataset would be read, checked and rewritten).
  hid_t ds = H5I_INVALID_HID;
  std::string name;
  std::vector<hsize_t> dims;
  int64_t row_len = 0, rows_total = 0, rows_done = 0, chunk_rows = 1, flushed = 0;
  std::vector<float> buf;
  RowHash hash;
  std::vector<std::pair<std::string, uint64_t>> written;  // name, hash
  bool open = false;

  void flush() {
    const int64_t rows = rows_done - flushed;
    if (rows == 0) return;
    H5Id fspace(H5Dget_space(ds), H5Sclose);
    std::vector<hsize_t> cnt = dims;
    if (!dims.empty()) {
      select_rows(fspace, dims, flushed, rows);
      cnt[0] = static_cast<hsize_t>(rows);
    }
    H5Id mspace(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr),
                H5Sclose);
    h5check(H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, buf.data()) >= 0, "writing " + name);
    flushed = rows_done;
  }
  void end() {
    if (!open) return;
    PL_CHECK(rows_done == rows_total, path + ": " + name + " got " + std::to_string(rows_done) + " of " +
                                          std::to_string(rows_total) + " rows");
    flush();
    if (ds >= 0) H5Dclose(ds);
    ds = H5I_INVALID_HID;
    written.emplace_back(name, hash.h);
    open = false;
  }
  ~Impl() {
    if (ds >= 0) H5Dclose(ds);
    if (file >= 0) {  // not finished: an error is on its way, and the file is incomplete
      H5Id f(file, H5Fclose);
      close_failed_file(f, path);
    }
  }
  // Runs one step of the writer; an HDF5 failure gets the file's name and what the file system says (a full disk).
  template <class F>
  void guarded(F&& step) {
    try {
      step();
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.rfind("HDF5: ", 0) != 0) throw;
      throw Error(e.code(), path + ": " + what + ": " + error_detail(path));
    }
  }
};

TensorFileWriter::TensorFileWriter(const std::string& path) : impl_(std::make_unique<Impl>()) {
  quiet();
  impl_->path = path;
  impl_->file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  h5check(impl_->file >= 0, "cannot create " + path);
}

TensorFileWriter::~TensorFileWriter() = default;

void TensorFileWriter::begin(const std::string& name, const std::vector<int64_t>& shape) {
  impl_->guarded([&] { begin_tensor(name, shape); });
}

void TensorFileWriter::begin_tensor(const std::string& name, const std::vector<int64_t>& shape) {
  Impl& w = *impl_;
  w.end();
  w.name = name;
  w.dims = to_h5(shape);
  w.row_len = row_length(shape);
  w.rows_total = shape.empty() ? 1 : shape[0];
  w.rows_done = w.flushed = 0;
  w.hash = RowHash{};
  bool empty = false;
  w.ds = create_dataset(w.file, name, H5T_IEEE_F32LE, w.dims, &empty);
  w.chunk_rows = 1;
  if (!empty && !shape.empty()) {
    H5Id dcpl(H5Dget_create_plist(w.ds), H5Pclose);
    std::vector<hsize_t> chunk(w.dims.size());
    H5Pget_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    w.chunk_rows = static_cast<int64_t>(chunk[0]);
  }
  if (empty) w.rows_total = 0;
  w.buf.assign(static_cast<size_t>(w.chunk_rows * w.row_len), 0.0f);
  w.open = true;
}

void TensorFileWriter::write_rows(const float* data, int64_t rows) {
  impl_->guarded([&] { write_rows_unguarded(data, rows); });
}

void TensorFileWriter::write_rows_unguarded(const float* data, int64_t rows) {
  Impl& w = *impl_;
  PL_CHECK(w.open && w.rows_done + rows <= w.rows_total, w.path + ": too many rows for " + w.name);
  w.hash.add(data, rows * w.row_len);
  while (rows > 0) {
    const int64_t in_buf = w.rows_done - w.flushed;
    const int64_t take = std::min(rows, w.chunk_rows - in_buf);
    std::memcpy(w.buf.data() + in_buf * w.row_len, data, static_cast<size_t>(take * w.row_len) * sizeof(float));
    w.rows_done += take;
    data += take * w.row_len;
    rows -= take;
    if (w.rows_done - w.flushed == w.chunk_rows) w.flush();
  }
}

void TensorFileWriter::end() {
  impl_->guarded([&] { impl_->end(); });
}

void TensorFileWriter::write_meta(const CheckpointMeta& meta) {
  Impl& w = *impl_;
  w.guarded([&] {
    w.end();
    write_string_attr(w.file, "polyllama_format_version", std::to_string(meta.format_version));
    write_string_attr(w.file, "config", meta.config_json);
    write_string_attr(w.file, "trainer_state", meta.trainer_json);
    if (!meta.chat_template_json.empty()) write_string_attr(w.file, "chat_template", meta.chat_template_json);
    const int64_t n = static_cast<int64_t>(meta.tokenizer_bytes.size());
    H5Id dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
    write_dataset(w.file, dxpl, "tokenizer.model", H5T_NATIVE_UCHAR, H5T_STD_U8LE, ShardSpec::full({n}), true,
                  meta.tokenizer_bytes.data());
  });
}

void TensorFileWriter::finish() {
  Impl& w = *impl_;
  w.guarded([&] {
    w.end();
    h5check(H5Fflush(w.file, H5F_SCOPE_GLOBAL) >= 0, "flushing the file");
    const herr_t closed = H5Fclose(w.file);
    w.file = H5I_INVALID_HID;
    h5check(closed >= 0, "closing the file");  // close writes metadata: a full disk can fail it
  });
  // Read back in chunk-sized blocks through the checksums.
  const TensorFileReader r(w.path);
  std::vector<float> buf;
  for (const auto& [name, want] : w.written) {
    const std::vector<int64_t> sh = r.shape(name);
    const int64_t total = sh.empty() ? 1 : sh[0], len = row_length(sh), block = r.chunk_rows(name);
    buf.resize(static_cast<size_t>(block * len));
    RowHash h;
    for (int64_t row = 0; row < total; row += block) {
      const int64_t n = std::min(block, total - row);
      r.read_rows(name, row, n, buf.data());
      h.add(buf.data(), n * len);
    }
    if (h.h != want)
      fail_runtime(w.path + ": tensor '" + name + "' does not read back intact after writing", __FILE__, __LINE__);
  }
}

}  // namespace polyllama
