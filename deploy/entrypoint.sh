#!/bin/sh
# Starts `colony node` in a container: serves on every address, stores under /data, and gives
# mDNS (and the URL peers are told) the container's own IPv4 address, which is only known at
# run time.  Set COLONY_COLONY_INTERFACES yourself (comma-separated IPs, e.g. a Kubernetes pod IP
# from the downward API) to skip the detection.  Extra arguments go to `colony node`.
set -eu
if [ -z "${COLONY_COLONY_INTERFACES:-}" ]; then
    # The address this container's hostname resolves to is the one on its network (docker,
    # podman and Kubernetes all write it into /etc/hosts).
    COLONY_COLONY_INTERFACES=$(python -c \
        'import socket; print(socket.gethostbyname(socket.gethostname()))')
    export COLONY_COLONY_INTERFACES
fi
exec colony node --host "${COLONY_HOST:-0.0.0.0}" --port "${COLONY_PORT:-8450}" \
    --data "${COLONY_DATA_DIR:-/data}" "$@"
