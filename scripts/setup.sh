#!/usr/bin/env bash
# Installs everything epcs needs to build, run and test, from Debian 12 packages only.
# Idempotent: packages already present are skipped, and apt is not touched when nothing is missing.
set -euo pipefail

packages=(
    build-essential cmake pkg-config
    libh2o-dev libuv1-dev liblua5.4-dev libmsgpack-dev libsqlite3-dev libssl-dev libjansson-dev
    # the cluster's store (--store postgresql://...), and the server its tests start
    libpq-dev postgresql-15
    # tests: real HTTP/2 clients (curl, h2load; python3-h2 frames by hand for the attacks) and
    # the test driver's msgpack codec
    curl nghttp2-client python3 python3-msgpack python3-icalendar python3-h2 openssl clang-format
    # tests: which system calls epcs makes (a rename reaches the disk with its directory)
    strace
    # tests: the core's in-process unit tests (tests/unit/test_check.c)
    libcmocka-dev
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#packages[@]} packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
else
    sudo=
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
