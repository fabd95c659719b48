#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries the given ELF files load, one a line.
# The runtime stage installs exactly these, so a library added to the build reaches the image
# without anyone keeping a second list in step with CMakeLists.txt.
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: runtime-packages.sh ELF..." >&2
    exit 2
fi

libs=$(ldd "$@") || {
    echo "runtime-packages: ldd failed on $*" >&2
    exit 1
}
if echo "$libs" | grep -q 'not found'; then
    echo "runtime-packages: unresolved libraries:" >&2
    echo "$libs" | grep 'not found' >&2
    exit 1
fi

echo "$libs" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u | while read -r lib; do
    # dpkg knows a file by the path its package ships it under; with merged /usr that is
    # sometimes the /lib path ldd prints and sometimes the resolved /usr/lib one.
    owner=$(dpkg-query -S "$lib" 2>/dev/null || dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null) || {
        echo "runtime-packages: no Debian package ships $lib" >&2
        exit 1
    }
    echo "${owner%%:*}"
done | sort -u
