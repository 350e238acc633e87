#!/usr/bin/env bash
# Run HERE (the Debian dev machine): downloads the Debian packages our build needs into .devdeps/
# (ignored by git), to carry to a GPU machine whose image lacks them. scripts/device/build.sh unpacks
# them there. Usage: bash scripts/device/fetch_deps.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .devdeps
cd .devdeps
PKGS=(libfmt-dev libfmt9 nlohmann-json3-dev libcli11-dev libpcre2-dev libpcre2-8-0 libpcre2-16-0
  libpcre2-32-0 libpcre2-posix3 libopenblas-dev libopenblas0 libopenblas-pthread-dev libopenblas0-pthread
  libcpp-httplib-dev libcpp-httplib0.11 libgtest-dev libgmock-dev googletest libbrotli-dev libbrotli1
  libssl-dev zlib1g-dev libboost1.74-dev libutf8proc-dev libutf8proc2)
for p in "${PKGS[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p" 2>&1 | grep -v '^W:' || true
done
du -sh .
