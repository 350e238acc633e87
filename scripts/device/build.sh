#!/usr/bin/env bash
# Run ON THE GPU MACHINE (Ubuntu image with nvcc, cmake, cuBLAS; none of our -dev packages): unpacks
# the carried .devdeps/*.deb into /opt/fsdeps, points CMake, pkg-config, the compiler and the loader
# at it, and builds FastServe with the CUDA backend into build-cuda/.
# Usage: source scripts/device/build.sh [cmake targets...]   (sourced: the environment stays set)
set -eo pipefail
DEPS=/opt/fsdeps
if [[ ! -d $DEPS/usr ]]; then
  mkdir -p $DEPS
  for f in .devdeps/*.deb; do dpkg -x "$f" $DEPS; done
  # dpkg -x runs no maintainer scripts: make the links update-alternatives would have made.
  ob=$DEPS/usr/lib/x86_64-linux-gnu/openblas-pthread
  ln -sf $ob/libopenblas.so.0 $ob/libopenblas.so 2>/dev/null || true
  ln -sf $ob/libblas.so.3 $DEPS/usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true
fi
L=$DEPS/usr/lib/x86_64-linux-gnu
export CMAKE_PREFIX_PATH=$DEPS/usr
export PKG_CONFIG_PATH=$L/pkgconfig:$DEPS/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$DEPS
export CPATH=$DEPS/usr/include:$DEPS/usr/include/x86_64-linux-gnu/openblas-pthread${CPATH:+:$CPATH}
export LIBRARY_PATH=$L:$L/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=$L:$L/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DFASTSERVE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DCMAKE_IGNORE_PREFIX_PATH=/usr/local/lib/python3.12 >/dev/null
cmake --build build-cuda -j"$(nproc)" ${1:+--target "$@"}
set +eo pipefail
