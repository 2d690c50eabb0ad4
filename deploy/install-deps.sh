#!/usr/bin/env bash
# Installs everything litedrive needs to build, run, test and benchmark on Debian 12.
# Only Debian packages; idempotent; safe to run as root on a fresh machine.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  build-essential cmake pkg-config
  libcaf-dev libfuse3-dev fuse3 libsqlite3-dev sqlite3
  librestinio-dev libasio-dev libhttp-parser-dev libfmt-dev
  nlohmann-json3-dev libspdlog-dev libgtest-dev
  python3 curl procps util-linux
)
if [ "${1:-}" = "--bench" ]; then pkgs+=(redis-server redis-tools wrk); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
