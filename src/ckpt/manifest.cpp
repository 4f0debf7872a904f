// manifest.json of a checkpoint step directory: written last at save, verified at load (ckpt/manifest.hpp).
#include "polyllama/ckpt/manifest.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "polyllama/ckpt/sha256.hpp"
#include "polyllama/core/atomic_file.hpp"
#include "polyllama/core/error.hpp"
#include "polyllama/core/log.hpp"
#include "polyllama/parallel/agree.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace polyllama {

namespace {

constexpr const char* kFormat = "polyllama checkpoint manifest";
constexpr int kVersion = 1;

// The files a manifest covers: every regular file of the directory but the manifest (and its write-in-progress).
std::vector<std::string> covered_files(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (it->is_regular_file(ec) && n != kManifestName && n != std::string(kManifestName) + ".tmp") names.push_back(n);
  }
  if (ec) fail_runtime("cannot list " + dir.string() + ": " + ec.message(), __FILE__, __LINE__);
  std::sort(names.begin(), names.end());
  return names;
}

// Runs fn(i) for i in [0, n) on up to the hardware's threads; the first exception (lowest i) is rethrown.
template <class Fn>
void parallel_for(size_t n, Fn&& fn) {
  const size_t threads = std::min<size_t>(n, std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (size_t i = t; i < n; i += threads) {
        try {
          fn(i);
        } catch (...) {
          errors[i] = std::current_exception();
        }
      }
    });
  for (std::thread& th : pool) th.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

bool is_save_in_progress(const fs::path& dir) {
  const std::string n = dir.filename().string();
  return n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0;
}

}  // namespace

void write_manifest(const std::string& step_dir, MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const fs::path dir(step_dir);
  // Rank 0 lists the files, so every rank hashes its share of one list.
  std::vector<std::string> names;
  run_agreed(comm, [&] {
    if (rank == 0) names = covered_files(dir);
  });
  std::string joined;
  for (const std::string& n : names) joined += n + '\n';
  long long len = static_cast<long long>(joined.size());
  MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, comm);
  joined.resize(static_cast<size_t>(len));
  if (len > 0) MPI_Bcast(joined.data(), static_cast<int>(len), MPI_CHAR, 0, comm);
  names.clear();
  for (std::istringstream in(joined); std::getline(in, joined);) names.push_back(joined);

  // Each rank hashes files rank, rank + size, ...; the digests meet on every rank by a sum of zero-filled slots.
  constexpr size_t kSlot = 64 + 20;  // hex digest, then the size in decimal
  std::vector<unsigned char> mine(names.size() * kSlot, 0), all(names.size() * kSlot, 0);
  run_agreed(comm, [&] {
    std::vector<size_t> share;
    for (size_t i = static_cast<size_t>(rank); i < names.size(); i += static_cast<size_t>(size)) share.push_back(i);
    parallel_for(share.size(), [&](size_t k) {
      const size_t i = share[k];
      uint64_t bytes = 0;
      const std::string hex = sha256_file((dir / names[i]).string(), &bytes);
      std::snprintf(reinterpret_cast<char*>(mine.data() + i * kSlot), kSlot, "%s%llu", hex.c_str(), static_cast<unsigned long long>(bytes));
    });
  });
  if (!mine.empty())
    MPI_Allreduce(mine.data(), all.data(), static_cast<int>(mine.size()), MPI_UNSIGNED_CHAR, MPI_SUM, comm);
  run_agreed(comm, [&] {
    if (rank != 0) return;
    json files = json::array();
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string slot(reinterpret_cast<const char*>(all.data() + i * kSlot));
      files.push_back({{"name", names[i]}, {"bytes", std::stoull(slot.substr(64))}, {"sha256", slot.substr(0, 64)}});
    }
    const json m = {{"format", kFormat}, {"version", kVersion}, {"files", files}};
    write_file_atomically((dir / kManifestName).string(), m.dump(1) + "\n");
  });
}

std::vector<ManifestEntry> read_manifest(const std::string& step_dir) {
  const std::string path = (fs::path(step_dir) / kManifestName).string();
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  json m;
  try {
    m = json::parse(ss.str());
  } catch (const json::exception& e) {
    fail_input(path + ": not valid JSON (" + e.what() + "); the checkpoint's file list cannot be trusted");
  }
  auto field = [&](const json& obj, const char* key, const std::string& where) -> const json& {
    if (!obj.is_object() || !obj.contains(key)) fail_input(path + ": " + where + "'" + key + "' is missing");
    return obj.at(key);
  };
  if (field(m, "format", "") != kFormat) fail_input(path + ": 'format' is not \"" + std::string(kFormat) + "\"");
  if (!field(m, "version", "").is_number_integer() || m.at("version").get<int64_t>() != kVersion)
    fail_input(path + ": 'version' is " + m.at("version").dump() + ", this polyllama reads version " +
               std::to_string(kVersion));
  const json& files = field(m, "files", "");
  if (!files.is_array()) fail_input(path + ": 'files' is not an array");
  std::vector<ManifestEntry> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string where = "files[" + std::to_string(i) + "].";
    const json &name = field(files[i], "name", where), &bytes = field(files[i], "bytes", where),
               &sha = field(files[i], "sha256", where);
    ManifestEntry e;
    // A name is one plain file of the directory: no path may lead out of it.
    if (!name.is_string() || (e.name = name.get<std::string>()).empty() || e.name.find('/') != std::string::npos ||
        e.name == "." || e.name == ".." || !seen.insert(e.name).second)
      fail_input(path + ": " + where + "name is not a distinct file name: " + name.dump());
    if (!bytes.is_number_unsigned()) fail_input(path + ": " + where + "bytes is not a size: " + bytes.dump());
    e.bytes = bytes.get<uint64_t>();
    if (!sha.is_string() || sha.get<std::string>().size() != 64 ||
        sha.get<std::string>().find_first_not_of("0123456789abcdef") != std::string::npos)
      fail_input(path + ": " + where + "sha256 is not 64 lowercase hex digits: " + sha.dump());
    e.sha256 = sha.get<std::string>();
    out.push_back(std::move(e));
  }
  return out;
}

void verify_checkpoint_files(const std::string& step_dir) {
  static std::mutex mu;
  static std::set<std::string> verified, warned;
  std::error_code ec;
  fs::path dir = fs::weakly_canonical(fs::absolute(step_dir, ec), ec);
  if (dir.empty()) dir = step_dir;
  if (is_save_in_progress(dir)) return;  // its manifest comes last, at publication
  if (!fs::exists(dir / kManifestName, ec)) {
    std::lock_guard<std::mutex> lock(mu);
    if (warned.insert(dir.string()).second)
      log_warn(step_dir + " has no " + kManifestName + " (a checkpoint saved before polyllama wrote manifests): "
               "its files are loaded without a whole-file check");
    return;
  }
  const std::vector<ManifestEntry> entries = read_manifest(dir.string());
  bool has_model = false;
  for (const ManifestEntry& e : entries) has_model |= e.name == "model.h5";
  if (!has_model) fail_input((dir / kManifestName).string() + ": does not list model.h5");
  // Verified before by this process, and no file changed since (size and modification time): not hashed again.
  std::string key = dir.string();
  for (const ManifestEntry& e : entries) {
    std::error_code fec;
    const fs::path p = dir / e.name;
    key += "\n" + e.name + " " + std::to_string(fs::file_size(p, fec)) + " " +
           std::to_string(fs::last_write_time(p, fec).time_since_epoch().count());
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    if (verified.count(key)) return;
  }
  parallel_for(entries.size(), [&](size_t i) {
    const ManifestEntry& e = entries[i];
    const std::string path = (dir / e.name).string();
    std::error_code fec;
    if (!fs::is_regular_file(path, fec))
      fail_input(path + " is missing, but " + kManifestName + " lists it: the checkpoint is incomplete");
    const uintmax_t size = fs::file_size(path, fec);
    if (fec || size != e.bytes)
      fail_input(path + " has " + std::to_string(size) + " bytes, " + kManifestName + " says " +
                 std::to_string(e.bytes) + ": the file is truncated or was changed after the save");
    const std::string got = sha256_file(path);
    if (got != e.sha256)
      fail_input(path + ": SHA-256 " + got + " differs from " + kManifestName + "'s " + e.sha256 +
                 ": the file is corrupt or was changed after the save");
  });
  std::lock_guard<std::mutex> lock(mu);
  verified.insert(key);
}

}  // namespace polyllama
