#pragma once
// Whole-file integrity of checkpoints: step_XXXXXXXX/manifest.json lists every other file of the step directory
// with its size and SHA-256, written last, before the directory's rename publishes it. HDF5's Fletcher32 covers
// chunk data only; the manifest also covers the superblock, object headers, B-trees and attributes, where a flipped
// bit could load as different weights. Loading verifies the files before HDF5 parses any of them.
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace polyllama {

constexpr const char* kManifestName = "manifest.json";

struct ManifestEntry {
  std::string name;  // file name inside the step directory
  uint64_t bytes = 0;
  std::string sha256;  // 64 lowercase hex digits, as sha256sum prints
};

// Hashes every regular file of step_dir (but manifest.json) and writes step_dir/manifest.json (atomically, fsynced).
// Collective over `comm`: file i is hashed by rank i mod size, so a save's hashing is spread over the ranks; a
// failure on any rank fails every rank together with its message.
void write_manifest(const std::string& step_dir, MPI_Comm comm = MPI_COMM_SELF);

// The entries of step_dir/manifest.json; fails (exit 1) naming the file and the field when it is not a manifest.
std::vector<ManifestEntry> read_manifest(const std::string& step_dir);

// Checks every file manifest.json lists: present, of the listed size, of the listed SHA-256 (files are hashed on
// parallel threads, 8 MiB reads). A mismatch fails with exit 1 naming the file. A step directory without a manifest
// (written before polyllama wrote them) passes with a warning, once per process; one being saved (step_*.tmp) passes
// silently. A directory verified once is not hashed again by the same process.
void verify_checkpoint_files(const std::string& step_dir);

}  // namespace polyllama
