#!/usr/bin/env bash
# Fetches polyllama's own dependencies (Open MPI, parallel HDF5, SentencePiece, CLI11, nlohmann-json, OpenBLAS,
# GoogleTest and the shared libraries they load) as Debian 12 packages into DIR, for a GPU node that has the CUDA
# toolkit and CMake but no package manager or network: copy DIR there with the source and run tools/gpu-check.sh,
# which unpacks them into a private prefix (never into /). Run this on a Debian 12 machine with apt (no root needed).
# Usage: tools/gpu-deps.sh [DIR]   (default: .gpu-deps, ignored by git; about 34 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu-deps}
# Headers and link libraries...
build=(libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libhdf5-openmpi-dev libhdf5-openmpi-103-1
       libhdf5-openmpi-hl-100 libsentencepiece-dev libsentencepiece0 libcli11-dev nlohmann-json3-dev
       libopenblas-dev libopenblas0 libopenblas-openmp-dev libopenblas0-openmp libgtest-dev googletest zlib1g-dev)
# ...and what they load at run time beyond glibc and the C++ runtime (from `ldd build/polyllama`, then dpkg -S;
# a GPU image built on another distribution may lack these sonames, e.g. libldap-2.5.so.0).
runtime=(libaec0 libsz2 libcurl4 libbrotli1 libnghttp2-14 libpsl5 librtmp1 libssh2-1 libssl3 libgnutls30 libhogweed6
         libnettle8 libgmp10 libidn2-0 libunistring2 libtasn1-6 libp11-kit0 libffi8 libgssapi-krb5-2 libkrb5-3
         libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libldap-2.5-0 libsasl2-2 libzstd1
         libevent-2.1-7 libevent-core-2.1-7 libevent-pthreads-2.1-7 libhwloc15 libhwloc-plugins libpciaccess0
         libpmix2 libfabric1 libucx0 libibverbs1 librdmacm1 libpsm2-2 libpsm-infinipath1 libnl-3-200
         libnl-route-3-200 libmunge2 libnuma1 libltdl7 libxnvctrl0 libudev1 libgfortran5 libquadmath0)
mkdir -p "$dir"
cd "$dir"
rm -f ./*.deb
apt-get download "${build[@]}" "${runtime[@]}"
echo "gpu-deps: $(ls ./*.deb | wc -l) packages, $(du -sh . | cut -f1) in $PWD"
