#!/usr/bin/env bash
# One command from a fresh Debian 12 machine (as root) to the whole test suite: installs the
# packages, builds litedrive and its tests, and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
BUILD_TESTING=ON bash deploy/build.sh
cd build
ctest --output-on-failure --timeout 1200 "$@"
