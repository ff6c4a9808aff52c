#!/bin/sh
# tests/server/openapi_lint.sh REPO_DIR
#
# Lints server/openapi.json with Redocly CLI (the version package.json pins),
# every recommended rule as an error (tests/server/redocly.yaml).  The CLI is
# installed into REPO_DIR/node_modules by `npm ci` (package-lock.json), or
# `npm install` when there is no lock file, the first time.  No network is
# needed after that; telemetry and update checks are off.  Exit status 77
# (skip) when node or npm is not installed (scripts/deps.sh test installs
# them).
set -u
root=${1:-.}
cd "$root" || exit 1

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "openapi_lint: skipped (node/npm not found; scripts/deps.sh test installs them)"
    exit 77
fi
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1 \
    npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

if [ ! -x node_modules/.bin/redocly ]; then
    if [ -f package-lock.json ]; then
        npm ci --no-audit --no-fund >/dev/null 2>npm-install.log || {
            cat npm-install.log; rm -f npm-install.log
            echo "openapi_lint: FAIL: npm ci failed"; exit 1; }
    else
        npm install --no-audit --no-fund >/dev/null 2>npm-install.log || {
            cat npm-install.log; rm -f npm-install.log
            echo "openapi_lint: FAIL: npm install failed"; exit 1; }
    fi
    rm -f npm-install.log
fi

# The linter must be able to fail: a description with a broken reference
# must be rejected, or a pass below would mean nothing.
bad=$(mktemp "${TMPDIR:-/tmp}/openapi-bad.XXXXXX.json")
trap 'rm -f "$bad"' EXIT
sed 's|#/components/schemas/MapInfo|#/components/schemas/NoSuchSchema|' server/openapi.json >"$bad"
if npx --no-install redocly lint --config tests/server/redocly.yaml "$bad" >/dev/null 2>&1; then
    echo "openapi_lint: FAIL: redocly accepted a description with a broken \$ref"
    exit 1
fi

out=$(npx --no-install redocly lint --config tests/server/redocly.yaml server/openapi.json 2>&1)
status=$?
if [ "$status" -ne 0 ]; then
    printf '%s\n' "$out" | grep -v '[║╔╚]'
    echo "openapi_lint: FAIL: redocly lint exited with $status"
    exit 1
fi
echo "openapi_lint: ok (server/openapi.json, redocly $(npx --no-install redocly --version 2>/dev/null | head -n 1))"
