#!/bin/sh
# scripts/image.sh [OUTDIR] - builds safemapd's container image, an OCI image
# layout in OUTDIR (default build/image/oci, tag "safemapd"), from Debian
# packages only: no registry, no Dockerfile, no daemon.
#
# How it works.
#   1. cmake builds safemapd in build/image (Release).  The safemap library is
#      linked statically; libevent and xxhash stay shared and come from the
#      Debian packages below.
#   2. mmdebstrap builds a bookworm root filesystem of the "essential" variant
#      (the Essential:yes packages: the smallest set that dpkg can configure)
#      plus the runtime packages safemapd links against (--include), without
#      documentation, man pages or locales (dpkg path-exclude), and /usr
#      merged by mmdebstrap's merged-usr hook (otherwise bookworm pulls in
#      the usrmerge package and with it perl: 60 MB more).  Its apt
#      sources are the machine's own: the URIs apt already uses for bookworm,
#      bookworm-updates and bookworm-security, read at run time with
#      `apt-get indextargets`, so no mirror host name lives in this file.  A
#      customize hook copies safemapd to /usr/local/bin, adds the user
#      safemap (uid/gid 10001), the volume directory /data owned by it, and
#      the health check script /usr/local/bin/safemapd-health.  The result is
#      one uncompressed tarball, with SOURCE_DATE_EPOCH set to the last
#      commit's time so that file times do not change from build to build.
#   3. umoci makes the OCI layout: `umoci new`, the tarball added as the one
#      layer (`umoci raw add-layer`), then `umoci config`: user 10001,
#      entrypoint `safemapd --bind 0.0.0.0 --dir /data`, exposed ports
#      7379/tcp (RESP) and 7380/tcp (HTTP), volume /data, labels.
#   4. The health check.  The OCI image config has no field for one (Docker's
#      image config does: config.Healthcheck) and umoci cannot set it.  So the
#      command is recorded in the label org.safemap.healthcheck, and then
#      added as Docker's config.Healthcheck to the config blob (a small
#      python3 rewrite of the config blob, manifest and index, with their
#      digests): runtimes that read Docker's field (docker, podman with
#      --format docker images) pick it up, the others ignore an unknown field.
#      docs/server.md shows how to pass it by hand (--health-cmd) too.
#   5. umoci gc; skopeo (when installed) also writes OUTDIR/../safemapd.tar, a
#      docker-archive that `docker load` takes.
#
# Needs root (mmdebstrap's root mode) or unprivileged user namespaces
# (its unshare mode).  Packages: `sh scripts/deps.sh image`.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/image/oci}
tag=safemapd
work=$root/build/image
mkdir -p "$work"
out=$(mkdir -p "$out" && cd "$out" && pwd)

for t in mmdebstrap umoci cmake python3; do
    command -v "$t" >/dev/null || { echo "image.sh: $t missing: run sh scripts/deps.sh image" >&2; exit 1; }
done

# 1. safemapd.
cmake -S "$root" -B "$work/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" -j "${JOBS:-2}" --target safemapd >/dev/null
bin=$work/build/server/safemapd
version=$("$bin" --version | awk '{print $2}')

# 2. The root filesystem.  The machine's Debian sources for the three suites.
sources=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null |
    awk '$2 == "bookworm" || $2 == "bookworm-updates" || $2 == "bookworm-security" { print $1, $2 }' | sort -u)
if [ -z "$sources" ]; then
    echo "image.sh: apt knows no bookworm source (run apt-get update first)" >&2
    exit 1
fi
set --
while read -r uri suite; do
    set -- "$@" "deb $uri $suite main"
done <<EOF
$sources
EOF

cat >"$work/safemapd-health" <<'EOF'
#!/bin/bash
# safemapd-health [PATH] [PORT]: exit 0 when safemapd's HTTP port answers
# 200 to GET PATH (default /health/live) on 127.0.0.1:PORT (default 7380).
exec 3<>"/dev/tcp/127.0.0.1/${2:-7380}" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "${1:-/health/live}" >&3
read -r -t 5 proto status rest <&3 || exit 1
[ "$status" = 200 ]
EOF
chmod 755 "$work/safemapd-health"

SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
rootfs=$work/rootfs.tar
rm -f "$rootfs"
hooks=
if [ -d /usr/share/mmdebstrap/hooks/merged-usr ]; then
    hooks=--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
fi
mmdebstrap --variant=essential --quiet $hooks \
    --include=libevent-2.1-7,libevent-pthreads-2.1-7,libxxhash0 \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook="copy-in $bin $work/safemapd-health /usr/local/bin" \
    --customize-hook='echo "safemap:x:10001:10001:safemapd:/data:/usr/sbin/nologin" >> "$1/etc/passwd"' \
    --customize-hook='echo "safemap:x:10001:" >> "$1/etc/group"' \
    --customize-hook='mkdir -p "$1/data" && chown 10001:10001 "$1/data" && chmod 750 "$1/data"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/cache/debconf/*-old' \
    bookworm "$rootfs" "$@"

# 3. The OCI layout.
rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci raw add-layer --image "$out:$tag" --history.created "$created" \
    --history.created_by "scripts/image.sh: mmdebstrap bookworm essential + safemapd $version" "$rootfs"
health='/usr/local/bin/safemapd-health /health/live 7380'
umoci config --image "$out:$tag" --no-history --created "$created" \
    --config.user 10001:10001 \
    --config.entrypoint /usr/local/bin/safemapd --config.entrypoint --bind --config.entrypoint 0.0.0.0 \
    --config.entrypoint --dir --config.entrypoint /data \
    --clear config.cmd \
    --config.workingdir /data \
    --config.volume /data \
    --config.exposedports 7379/tcp --config.exposedports 7380/tcp \
    --config.stopsignal SIGTERM \
    --config.label "org.opencontainers.image.title=safemapd" \
    --config.label "org.opencontainers.image.description=Redis-protocol and HTTP server over safemap's concurrent maps" \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.licenses=MIT" \
    --config.label "org.opencontainers.image.base.name=debian:bookworm (mmdebstrap, essential)" \
    --config.label "org.safemap.healthcheck=$health" \
    --manifest.annotation "org.opencontainers.image.version=$version"
umoci tag --image "$out:$tag" "$version"

# 4. Docker's config.Healthcheck, written into the config blob.
python3 - "$out" "$health" <<'EOF'
import hashlib, json, os, sys
out, health = sys.argv[1], sys.argv[2]
def blob(d):
    return os.path.join(out, "blobs", *d.split(":"))
def put(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(blob(d), "wb") as f:
        f.write(data)
    return d, len(data)
index = json.load(open(os.path.join(out, "index.json")))
for m in index["manifests"]:
    man = json.load(open(blob(m["digest"])))
    cfg = json.load(open(blob(man["config"]["digest"])))
    cfg.setdefault("config", {})["Healthcheck"] = {
        "Test": ["CMD"] + health.split(), "Interval": 10 * 10**9,
        "Timeout": 5 * 10**9, "StartPeriod": 30 * 10**9, "Retries": 3}
    man["config"]["digest"], man["config"]["size"] = put(json.dumps(cfg, separators=(",", ":")).encode())
    m["digest"], m["size"] = put(json.dumps(man, separators=(",", ":")).encode())
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f, separators=(",", ":"))
EOF

# 5. Unreferenced blobs out; a docker-archive beside the layout.
umoci gc --layout "$out"
if command -v skopeo >/dev/null; then
    rm -f "$work/safemapd.tar"
    skopeo copy --quiet "oci:$out:$tag" "docker-archive:$work/safemapd.tar:safemapd:$version"
fi
layer=$(du -b "$out"/blobs/sha256 | awk '{print $1}')
unpacked=$(stat -c %s "$rootfs")
echo "image: $out:$tag (and :$version); compressed $(($layer / 1024)) KiB, root filesystem $(($unpacked / 1024)) KiB"
