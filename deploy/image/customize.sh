#!/bin/sh
# mmdebstrap --customize-hook for deploy/image/build.sh: install pleg-doctor into the root
# filesystem ROOT and make what is left byte-stable. Runs on the build host as root.
#
#   customize.sh ROOT WHEELS VERSION
#
# WHEELS holds pleg-doctor's wheel, the dependency wheels and requirements.txt (hash-pinned).
set -eu
ROOT=$1
WHEELS=$2
VERSION=$3

in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 "$@"; }

mkdir -p "$ROOT/tmp/wheels"
cp "$WHEELS"/*.whl "$WHEELS/requirements.txt" "$ROOT/tmp/wheels/"

# the venv: Debian's python3 (3.11); pip comes from python3-venv's bundled wheel (no network)
in_root python3 -m venv /opt/pleg-doctor
in_root /opt/pleg-doctor/bin/pip install -q --no-index --find-links /tmp/wheels --no-compile \
    --no-deps --require-hashes -r /tmp/wheels/requirements.txt
in_root /opt/pleg-doctor/bin/pip install -q --no-index --find-links /tmp/wheels --no-compile \
    --no-deps "pleg-doctor==$VERSION"
in_root /opt/pleg-doctor/bin/pip check
# pip and setuptools are not needed at run time
in_root /opt/pleg-doctor/bin/pip uninstall -q -y pip setuptools
in_root /opt/pleg-doctor/bin/pleg-doctor --version

# byte-code: compiled once, checked against the source's hash instead of its mtime, so the
# .pyc bytes do not depend on when the build ran (and the read-only root needs no __pycache__)
find "$ROOT/opt/pleg-doctor" -name __pycache__ -type d -prune -exec rm -rf {} +
in_root python3 -m compileall -q -j 1 --invalidation-mode unchecked-hash /opt/pleg-doctor/lib

# what differs between two builds and is not needed: logs, caches, apt lists, the build's wheels
rm -rf "$ROOT/tmp/wheels" "$ROOT"/tmp/* "$ROOT"/var/tmp/*
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
    "$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/cache/ldconfig/aux-cache
find "$ROOT/var/log" -type f -exec rm -f {} +
# systemd's first-boot state: empty machine-id (the DaemonSet mounts the node's), no random seed
: > "$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id" "$ROOT/var/lib/systemd/random-seed"
