#!/bin/sh
# run.sh - installs the build tree into a temporary prefix and builds and
# runs a consumer against it, three ways: the CMake package (shared and
# static targets), pkg-config, and the installed libsafemap.so's SONAME.
#
# usage: run.sh BUILD_DIR CC [CMAKE]
# Exit 77 (CTest SKIP_RETURN_CODE) when pkg-config is missing.
set -eu
build=$1
cc=$2
cmake=${3:-cmake}
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v pkg-config >/dev/null 2>&1; then
    echo "pkg-config not found: skipped"
    exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix=$tmp/prefix

step() { echo "== $*"; }

step "cmake --install into $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" || {
    cat "$tmp/install.log"
    exit 1
}

so=$(find "$prefix" -name 'libsafemap.so' | head -n 1)
[ -n "$so" ] || { echo "FAIL: no libsafemap.so installed"; find "$prefix"; exit 1; }
libdir=$(dirname "$so")
[ -f "$libdir/libsafemap.a" ] || { echo "FAIL: no libsafemap.a next to libsafemap.so"; exit 1; }
[ -f "$prefix/include/safemap.h" ] || { echo "FAIL: safemap.h not installed"; exit 1; }
[ -f "$prefix/include/safemap/typed.h" ] || { echo "FAIL: safemap/typed.h not installed"; exit 1; }

step "SONAME"
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
echo "SONAME $soname"
case "$soname" in
libsafemap.so.[0-9]*) ;;
*) echo "FAIL: $so has no versioned SONAME"; exit 1 ;;
esac
[ -e "$libdir/$soname" ] || { echo "FAIL: $libdir/$soname (the SONAME) is not installed"; exit 1; }

step "find_package(safemap CONFIG)"
"$cmake" -S "$here" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
    >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; exit 1; }
"$cmake" --build "$tmp/consumer" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
readelf -d "$tmp/consumer/consumer" | grep -q "NEEDED.*\[$soname\]" ||
    { echo "FAIL: consumer does not link $soname"; exit 1; }
LD_LIBRARY_PATH=$libdir "$tmp/consumer/consumer"
"$tmp/consumer/consumer_static"

step "pkg-config"
pcdir=$libdir/pkgconfig
[ -f "$pcdir/safemap.pc" ] || { echo "FAIL: $pcdir/safemap.pc not installed"; exit 1; }
flags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs safemap)
echo "pkg-config --cflags --libs safemap: $flags"
# shellcheck disable=SC2086 # the flags are words
"$cc" -std=c11 -o "$tmp/consumer-pc" "$here/consumer.c" $flags
LD_LIBRARY_PATH=$libdir "$tmp/consumer-pc"

step "rpath: runs with no LD_LIBRARY_PATH (the README's non-system prefix recipe)"
"$cc" -std=c11 -o "$tmp/consumer-rpath" "$here/consumer.c" -I"$prefix/include" \
    -L"$libdir" -Wl,-rpath,"$libdir" -lsafemap -lpthread
env -u LD_LIBRARY_PATH "$tmp/consumer-rpath"
# shellcheck disable=SC2086 # the flags are words
"$cc" -std=c11 -o "$tmp/consumer-pc-rpath" "$here/consumer.c" $flags \
    -Wl,-rpath,"$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=libdir safemap)"
env -u LD_LIBRARY_PATH "$tmp/consumer-pc-rpath"

step "documentation in share/doc/safemap"
docdir=$prefix/share/doc/safemap
for f in README.md LICENSE CHANGELOG.md docs/diagnostics.md docs/safety.md docs/map.md; do
    [ -s "$docdir/$f" ] || { echo "FAIL: $docdir/$f not installed"; find "$prefix/share"; exit 1; }
done
grep -q "Copyright (c) 2026 the safemap authors" "$docdir/LICENSE" ||
    { echo "FAIL: installed LICENSE lacks the copyright line"; exit 1; }

step "the safemap tool"
"$prefix/bin/safemap" --version | grep -q "^safemap $(
    sed -n 's/^#define SAFEMAP_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/safemap.h")" ||
    { echo "FAIL: safemap --version does not print the header's version"; exit 1; }
echo "install test passed"
