#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds epcsd in Release and runs it on its embedded
# defaults: 127.0.0.1:8080, the bundled lua_rules/, the built plugins, state under ./var.
# Extra arguments go to epcsd (e.g. --threads 4). It runs without API keys, so it listens on
# loopback only; to serve a network, run build-release/epcsd with --keys (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DEPCS_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)"
# --no-auth: the development mode (no API keys), which epcsd allows on loopback only.
exec ./build-release/epcsd --no-auth "$@"
