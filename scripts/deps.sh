#!/bin/sh
# Installs the Debian packages a job needs, when any is missing.
#   scripts/deps.sh test    compilers, sanitizer runtimes, valgrind, Go (pprof),
#                           prometheus (promtool); for safemapd: libevent,
#                           xxhash, redis-tools (redis-cli, redis-benchmark),
#                           redis-server, python3, Node.js and npm (the
#                           OpenAPI linter)
#   scripts/deps.sh bench   the peers: Boost 1.83 from bookworm-backports
#                           (unordered_flat_map and concurrent_flat_map), Abseil,
#                           Go, jemalloc, mimalloc, tcmalloc, gnuplot, liburcu
#                           (rculfhash)
#   scripts/deps.sh module  the Redis module (module/) and its tests: the
#                           module API header (see below), redis-server and
#                           redis-tools (Redis 7.0), valkey-server (Valkey 8,
#                           bookworm-backports), libhiredis-dev (the cluster
#                           routing client), python3
#
# The module API header (redismodule.h) is never copied into this
# repository.  `module` takes it from Debian's redis source package with
# `apt-get source --download-only redis` and extracts src/redismodule.h to
# build/deps/redismodule.h, where CMake looks for it.  apt needs a deb-src
# entry for that: when it has none, `module` writes
# /etc/apt/sources.list.d/debian-src.sources with the URI (and keyring) of the
# machine's own bookworm source, found as for backports below.
#   scripts/deps.sh image   the container image of safemapd (make image):
#                           mmdebstrap (the root filesystem), umoci (the OCI
#                           layout and its config), skopeo (inspection), and
#                           the build of safemapd itself
#   scripts/deps.sh server-bench  safemapd against Redis (make bench-server):
#                           redis-server, redis-tools (redis-benchmark),
#                           wrk, gnuplot, curl, and the build of safemapd
#
# Boost 1.83 is not in Debian 12 itself, only in bookworm-backports.  When
# apt does not know that suite yet, `bench` adds it: it reads the URI (and
# keyring) of the machine's own Debian source, from the deb822 files in
# /etc/apt/sources.list.d/*.sources or from the one-line entries of
# /etc/apt/sources.list, and writes /etc/apt/sources.list.d/backports.sources
# with the same URI and the suite bookworm-backports.  So it uses whatever
# mirror the machine already trusts, and no host name lives in this file.
# Backports are never preferred by apt: only the packages asked for with
# `-t bookworm-backports` come from there.
#
# libboost1.83-dev conflicts with Debian 12's own libboost1.81-dev (apt:
# "libboost1.83-dev : Conflicts: libboost1.81-dev"), so the benchmark uses 1.83
# for both Boost maps, and installing it replaces a 1.81 already present.
set -eu
case "${1:-test}" in
test)
    pkgs="cmake make gcc g++ clang libclang-rt-14-dev valgrind pkg-config golang-go prometheus libevent-dev libxxhash-dev redis-tools redis-server python3"
    # npm comes with Debian's nodejs package pair, or bundled in another
    # nodejs build a machine may have (which conflicts with Debian's npm):
    # asked for only when no npm command is there.
    command -v npm >/dev/null 2>&1 || pkgs="$pkgs nodejs npm"
    backports=""
    ;;
bench)
    pkgs="cmake make gcc g++ pkg-config libabsl-dev golang-go gnuplot-nox libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev liburcu-dev"
    backports="libboost1.83-dev"
    ;;
image)
    pkgs="cmake make gcc pkg-config libevent-dev libxxhash-dev mmdebstrap umoci skopeo python3"
    backports=""
    ;;
module)
    pkgs="cmake make gcc pkg-config redis-server redis-tools libhiredis-dev python3"
    backports="valkey-server"
    ;;
server-bench)
    pkgs="cmake make gcc pkg-config libevent-dev libxxhash-dev redis-server redis-tools wrk gnuplot-nox curl python3"
    backports=""
    ;;
*) echo "usage: $0 test|bench|image|server-bench|module" >&2; exit 2 ;;
esac
# module: the header is fetched (at the end) when build/deps has none.
module_header="$(cd "$(dirname "$0")/.." && pwd)/build/deps/redismodule.h"
need_header=""
if [ "${1:-test}" = module ] && [ ! -f "$module_header" ]; then
    need_header=1
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
missing=""
for p in $pkgs; do installed "$p" || missing="$missing $p"; done
missing_bp=""
for p in $backports; do installed "$p" || missing_bp="$missing_bp $p"; done
[ -z "$missing" ] && [ -z "$missing_bp" ] && [ -z "$need_header" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# Prints "URI KEYRING" of the first Debian source for the plain bookworm suite
# (KEYRING is "-" when the entry names none), or nothing.
debian_source() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822: blank-line separated stanzas of "Field: value" lines.
        awk 'function flush() {
                 if (!done && types ~ /(^| )deb( |$)/ && suites ~ /(^| )bookworm( |$)/ && enabled !~ /^no$/ && uri != "") {
                     print uri, (key == "" ? "-" : key); done = 1
                 }
                 types = suites = uri = key = enabled = ""
             }
             /^[ \t]*$/ { flush(); next }
             /^[ \t]*#/ { next }
             { field = tolower($1); sub(/^[^:]*:[ \t]*/, "") }
             field == "types:" { types = $0 }
             field == "suites:" { suites = $0 }
             field == "uris:" { uri = $1 }
             field == "signed-by:" && $1 ~ /^\// { key = $1 }   # a keyring file, not an inline key
             field == "enabled:" { enabled = tolower($1) }
             END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # One-line form: deb [options] URI SUITE COMPONENTS...
        awk '$1 == "deb" {
                 key = "-"; i = 2
                 if ($2 ~ /^\[/) {
                     for (; i <= NF; i++) {
                         if ($i ~ /signed-by=/) { key = $i; sub(/.*signed-by=/, "", key); sub(/\]$/, "", key) }
                         if ($i ~ /\]$/) { i++; break }
                     }
                 }
                 if ($(i + 1) == "bookworm") { print $i, key; exit }
             }' "$f"
    done
}

add_backports() {
    if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 0
    fi
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ "$codename" != bookworm ]; then
        echo "deps.sh: this is not Debian 12 (bookworm) but '$codename': add a source for Boost 1.83 by hand" >&2
        return 1
    fi
    set -- $(debian_source | head -n 1)
    if [ $# -lt 1 ]; then
        echo "deps.sh: found no apt source for the bookworm suite to reuse for bookworm-backports" >&2
        return 1
    fi
    echo "adding bookworm-backports from $1"
    {
        echo "Types: deb"
        echo "URIs: $1"
        echo "Suites: bookworm-backports"
        echo "Components: main"
        [ "${2:--}" = "-" ] || echo "Signed-By: $2"
    } | $SUDO tee /etc/apt/sources.list.d/backports.sources >/dev/null
}

if [ -n "$missing_bp" ]; then
    add_backports
fi
$SUDO apt-get update -qq
if [ -n "$missing" ]; then
    echo "installing:$missing"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ -n "$missing_bp" ]; then
    echo "installing from bookworm-backports:$missing_bp"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports $missing_bp >/dev/null
fi

# module: src/redismodule.h of Debian's redis source package.
add_deb_src() {
    if grep -rqsE '^[[:space:]]*(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 0
    fi
    set -- $(debian_source | head -n 1)
    if [ $# -lt 1 ]; then
        echo "deps.sh: found no apt source for the bookworm suite to reuse for deb-src" >&2
        return 1
    fi
    echo "adding deb-src for bookworm from $1"
    {
        echo "Types: deb-src"
        echo "URIs: $1"
        echo "Suites: bookworm"
        echo "Components: main"
        [ "${2:--}" = "-" ] || echo "Signed-By: $2"
    } | $SUDO tee /etc/apt/sources.list.d/debian-src.sources >/dev/null
    $SUDO apt-get update -qq
}
if [ -n "$need_header" ]; then
    add_deb_src
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get source --download-only -qq redis >/dev/null)
    orig=$(ls "$tmp"/redis_*.orig.tar.* 2>/dev/null | head -n 1)
    if [ -z "$orig" ]; then
        echo "deps.sh: apt-get source redis gave no upstream tarball" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$module_header")"
    tar -xOf "$orig" --wildcards '*/src/redismodule.h' >"$tmp/redismodule.h"
    grep -q 'REDISMODULE_APIVER_1' "$tmp/redismodule.h" || { echo "deps.sh: no redismodule.h in $orig" >&2; exit 1; }
    mv "$tmp/redismodule.h" "$module_header"
    echo "module API header: $module_header (from $(basename "$orig"))"
fi
