#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds epcsd in Release and runs it on its embedded
# defaults: 127.0.0.1:8080, the bundled lua_rules/, the built plugins, state under ./var.
# Extra arguments go to epcsd (e.g. --listen 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DEPCS_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)"
exec ./build-release/epcsd "$@"
