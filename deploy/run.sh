#!/usr/bin/env bash
# One command from a fresh Debian 12 machine (as root) to a running litedrive on its embedded
# defaults: installs the packages, builds, and runs the daemon in the foreground (Ctrl+C stops it
# cleanly). Extra arguments are passed to litedrive, e.g. deploy/run.sh --http=0.0.0.0:8420
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
BUILD_TESTING=OFF bash deploy/build.sh
exec ./build/litedrive "$@"
