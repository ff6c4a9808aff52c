#!/bin/sh
# tests/pprof_check.sh PROGRAM WORKDIR
#
# PROGRAM (test_profile) writes a heap profile with --write=FILE while two
# functions, profile_get_alpha and profile_get_beta, hold arrays from
# SM_CHECK_FULL pools.  The file must pass `gzip -t`, `go tool pprof -top`
# must open it, and its listing must name both functions.  The last line
# says "pprof_check: ok" or "pprof_check: FAIL: why"; exit status 77 (and
# "pprof_check: skipped") when go is not installed.
set -u
prog=$1
dir=$2

if ! command -v go >/dev/null 2>&1; then
    echo "pprof_check: skipped (go not found; scripts/deps.sh test installs golang-go)"
    exit 77
fi
rm -rf "$dir"
mkdir -p "$dir" || exit 1
profile=$dir/heap.pb.gz

fail() {
    echo "pprof_check: FAIL: $*"
    exit 1
}

"$prog" --write="$profile" || fail "$prog --write=$profile exited with $?"
gzip -t "$profile" || fail "gzip -t rejects $profile"

# go needs a cache and a home; keep both out of the user's.
out=$(HOME=$dir GOCACHE=$dir/gocache GOPATH=$dir/gopath PPROF_TMPDIR=$dir \
      go tool pprof -top "$prog" "$profile" 2>&1)
status=$?
printf '%s\n' "$out"
[ "$status" -eq 0 ] || fail "go tool pprof exited with $status"
for fn in profile_get_alpha profile_get_beta; do
    printf '%s\n' "$out" | grep -q "$fn" || fail "$fn is not in the listing"
done
echo "pprof_check: ok"
