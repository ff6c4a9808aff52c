#!/bin/sh
# tests/server/test_image.sh [OCI-LAYOUT] - checks the image scripts/image.sh
# built (default build/image/oci, tag safemapd).  `make test-image` builds the
# image and runs this; it is not part of `make test` (the root filesystem
# takes a minute or two to build).
#
# 1. Inspection, always (skopeo inspect --config oci:LAYOUT:safemapd, and the
#    raw config blob for Docker's Healthcheck field that skopeo does not
#    show): a non-root user, ports 7379/tcp and 7380/tcp, the entrypoint
#    safemapd --bind 0.0.0.0 --dir /data, the volume /data, the labels.
# 2. A run, where the machine allows it (root, for chroot and a network
#    namespace): `umoci unpack` the image into a bundle, then, as the image's
#    user, chrooted into its root filesystem: safemapd --version; then the
#    entrypoint exactly as configured, inside a fresh network namespace (so
#    0.0.0.0 is that namespace's loopback and nothing else), answering PING
#    on 7379, 200 on /health/live, and the image's own health check script.
#    Everything is bounded by `timeout`; the server is stopped on exit.
#    Without root the run is skipped (printed), and the inspection decides.
# Exit 0 pass, 1 fail, 77 skip (tools or image missing).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
layout=${1:-$root/build/image/oci}
ref="oci:$layout:safemapd"
for t in skopeo umoci python3; do
    command -v "$t" >/dev/null || { echo "skip: $t missing (sh scripts/deps.sh image)"; exit 77; }
done
[ -f "$layout/index.json" ] || { echo "skip: no image at $layout (make image)"; exit 77; }

fails=0
passes=0
check() { # NAME CONDITION-EXIT-STATUS
    if [ "$2" -eq 0 ]; then
        passes=$((passes + 1)); echo "ok   $1"
    else
        fails=$((fails + 1)); echo "FAIL $1"
    fi
}

tmp=$(mktemp -d /tmp/test_image.XXXXXX)
pidfile=$tmp/ns.pid
cleanup() {
    if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# 1. Inspection.
skopeo inspect --config "$ref" >"$tmp/config.json"
skopeo inspect "$ref" >"$tmp/inspect.json"
python3 - "$tmp/config.json" "$tmp/inspect.json" "$layout" >"$tmp/checks" <<'EOF'
import json, os, sys
cfg = json.load(open(sys.argv[1]))["config"]
insp = json.load(open(sys.argv[2]))
layout = sys.argv[3]
def blob(d):
    return os.path.join(layout, "blobs", *d.split(":"))
idx = json.load(open(os.path.join(layout, "index.json")))
man = json.load(open(blob(idx["manifests"][0]["digest"])))
raw = json.load(open(blob(man["config"]["digest"])))["config"]
user = cfg.get("User", "")
labels = cfg.get("Labels") or {}
hc = raw.get("Healthcheck") or {}
checks = [
    ("user is not root (%r)" % user, user.split(":")[0] not in ("", "0", "root")),
    ("exposes 7379/tcp", "7379/tcp" in (cfg.get("ExposedPorts") or {})),
    ("exposes 7380/tcp", "7380/tcp" in (cfg.get("ExposedPorts") or {})),
    ("entrypoint is safemapd", (cfg.get("Entrypoint") or [""])[0] == "/usr/local/bin/safemapd"),
    ("entrypoint binds 0.0.0.0", "--bind 0.0.0.0" in " ".join(cfg.get("Entrypoint") or [])),
    ("entrypoint uses --dir /data", "--dir /data" in " ".join(cfg.get("Entrypoint") or [])),
    ("volume /data", "/data" in (cfg.get("Volumes") or {})),
    ("label org.safemap.healthcheck names /health/live",
     "/health/live" in labels.get("org.safemap.healthcheck", "")),
    ("label org.opencontainers.image.version", bool(labels.get("org.opencontainers.image.version"))),
    ("skopeo inspect shows the labels", insp.get("Labels") == labels),
    ("Docker Healthcheck in the config blob runs the label's command",
     hc.get("Test", [None])[1:] == labels.get("org.safemap.healthcheck", "").split()),
    ("one layer", len(insp.get("Layers") or []) == 1),
]
for name, ok in checks:
    print("%d %s" % (0 if ok else 1, name))
print("# entrypoint:", " ".join(cfg.get("Entrypoint") or []))
EOF
while read -r st name; do
    case $st in '#') echo "     $name" ;; *) check "$name" "$st" ;; esac
done <"$tmp/checks"
size=$(du -sb "$layout/blobs" | awk '{print $1}')
echo "     image blobs: $((size / 1024)) KiB"

# 2. A run, when this machine lets us chroot and make a network namespace.
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! unshare -n true 2>/dev/null; then
    echo "skip run: needs root, unshare -n and ip (inspection only)"
else
    umoci unpack --image "$layout:safemapd" "$tmp/bundle" >/dev/null
    rootfs=$tmp/bundle/rootfs
    user=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["User"])' "$tmp/config.json")
    entry=$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["config"]["Entrypoint"]))' "$tmp/config.json")
    v=$(timeout 10 chroot --userspec="$user" "$rootfs" /usr/local/bin/safemapd --version 2>&1 || true)
    echo "     --version in the image: $v"
    case $v in "safemapd "*) check "safemapd --version runs in the image as $user" 0 ;;
        *) check "safemapd --version runs in the image as $user" 1 ;; esac

    # In a fresh network namespace: start the entrypoint, wait for it, PING it,
    # ask /health/live, run the image's health check, then stop it.
    cat >"$tmp/probe.py" <<'EOF'
import socket, sys, time
def talk(port, data, want, deadline):
    while time.time() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(data)
            out = b""
            while want not in out and len(out) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
            s.close()
            return out
        except OSError:
            time.sleep(0.05)
    return b""
end = time.time() + 10
print("ping", talk(7379, b"PING\r\n", b"\r\n", end).decode().strip())
r = talk(7380, b"GET /health/live HTTP/1.0\r\n\r\n", b"}", end).decode()
print("live", r.split("\r\n")[0])
EOF
    cat >"$tmp/ns.sh" <<EOF
ip link set lo up
echo \$\$ >"$pidfile"
timeout 30 chroot --userspec="$user" "$rootfs" $entry >"$tmp/server.log" 2>&1 &
srv=\$!
timeout 15 python3 "$tmp/probe.py"
if timeout 10 chroot --userspec="$user" "$rootfs" /usr/local/bin/safemapd-health /health/live 7380; then
    echo health 0
else
    echo health 1
fi
kill -TERM \$srv 2>/dev/null
wait \$srv
echo exit \$?
EOF
    timeout 60 unshare -n sh "$tmp/ns.sh" >"$tmp/run.out" 2>&1 || true
    sed 's/^/     /' "$tmp/run.out"
    grep -q '^ping +PONG' "$tmp/run.out"; check "PING answered PONG inside the image (entrypoint as configured)" $?
    grep -q '^live HTTP/1.[01] 200' "$tmp/run.out"; check "/health/live answered 200" $?
    grep -q '^health 0' "$tmp/run.out"; check "the image's health check command passes" $?
    grep -q '^exit 0' "$tmp/run.out"; check "safemapd exited 0 on SIGTERM" $?
    grep -q . "$tmp/server.log" && sed 's/^/     log: /' "$tmp/server.log" | head -n 5
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
