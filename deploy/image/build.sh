#!/bin/sh
# Build the pleg-doctor OCI image from Debian packages: no base image is pulled from a registry.
#
#   deploy/image/build.sh [--out DIR] [--tag TAG] [--rev COMMIT | --worktree] [--print-digest]
#   (DIR defaults to ./pleg-doctor-oci, TAG to the version in pyproject.toml, COMMIT to HEAD)
#
# 1. the root filesystem: mmdebstrap, Debian 12 (bookworm, minbase) + python3, python3-venv,
#    ca-certificates, systemd (for journalctl, the one tool `collect` runs besides dmesg);
# 2. pleg-doctor: a wheel of this checkout (`pip wheel --no-deps`, from `git archive COMMIT`, or the
#    work tree with --worktree) and its dependencies from PyPI, pinned with hashes in
#    requirements.txt, installed into the venv /opt/pleg-doctor (customize.sh, run by mmdebstrap);
# 3. one layer: GNU tar, sorted names, numeric owners, every mtime clamped to SOURCE_DATE_EPOCH
#    (COMMIT's time, HEAD's with --worktree, unless set), no atime/ctime/PID in the pax headers;
# 4. the OCI image: umoci init/new, `umoci raw add-layer`, `umoci config` (entrypoint, cmd, user,
#    labels, created = SOURCE_DATE_EPOCH), `umoci gc`, written as an OCI layout in DIR.
#
# Prints the manifest digest on stdout with --print-digest (everything else goes to stderr):
# put it into deploy/kustomization.yaml (images[0].digest), or push with
#   skopeo copy oci:DIR:TAG docker://ghcr.io/pleg-doctor/pleg-doctor:TAG
# which keeps the digest (the manifest is copied as it is).
#
# Needs root (mmdebstrap's root mode; chroot), mmdebstrap, umoci, GNU tar, git, and a python3 with
# pip on the host (PYTHON=...); network access to a Debian mirror and to PyPI.
# Environment: DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR (e.g. snapshot.debian.org URLs to pin the
# packages in time), SOURCE_DATE_EPOCH, PYTHON, IMAGE_SOURCE (the org.opencontainers.image.source label).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT="$PWD/pleg-doctor-oci"
TAG=""
WORKTREE=0
REV=HEAD
PRINT_DIGEST=0
PYTHON=${PYTHON:-python3}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
IMAGE_SOURCE=${IMAGE_SOURCE:-https://github.com/pleg-doctor/pleg-doctor}
PACKAGES="python3,python3-venv,ca-certificates,systemd"

usage() {
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --tag) TAG=$2; shift 2 ;;
        --worktree) WORKTREE=1; shift ;;
        --rev) REV=$2; shift 2 ;;
        --print-digest) PRINT_DIGEST=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

log() { echo "build.sh: $*" >&2; }
for tool in mmdebstrap umoci tar git chroot; do
    command -v "$tool" >/dev/null || { log "$tool not found (apt-get install mmdebstrap umoci)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { log "needs root (mmdebstrap root mode, chroot)"; exit 1; }

REVISION=$(git -C "$REPO" rev-parse --verify "$REV^{commit}")
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct "$REVISION")}
export SOURCE_DATE_EPOCH
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
VERSION=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")
[ -n "$TAG" ] || TAG=$VERSION

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pleg-doctor-image.XXXXXX")
# mount(8) inside mmdebstrap's chroot setup creates /run/mount (libmount's utab): leave /run as found
RUN_MOUNT_EXISTED=0
[ -e /run/mount ] && RUN_MOUNT_EXISTED=1
cleanup() {
    # mmdebstrap unmounts what it mounted; a failed run may leave the chroot's mounts behind
    for m in $(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$WORK"
    if [ "$RUN_MOUNT_EXISTED" = 0 ] && [ -d /run/mount ]; then
        find /run/mount -maxdepth 1 -type f -name 'utab*' -empty -delete 2>/dev/null || true
        rmdir /run/mount 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# -- the source: the commit (default) or the work tree (tracked + untracked, not ignored) --------
mkdir "$WORK/src" "$WORK/wheels"
if [ "$WORKTREE" = 1 ]; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
        | tar -C "$REPO" --null -T - -cf - | tar -C "$WORK/src" -xf -
    if [ -n "$(git -C "$REPO" status --porcelain)" ]; then
        REVISION="$REVISION-dirty"
    fi
else
    git -C "$REPO" archive --format=tar "$REVISION" | tar -C "$WORK/src" -xf -
fi
log "pleg-doctor $VERSION, revision $REVISION, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH ($CREATED)"

# -- wheels: ours (built here) and the pinned dependencies (hash-checked) -----------------------
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$WORK/wheels" "$WORK/src" >&2
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --require-hashes -r "$HERE/requirements.txt" --dest "$WORK/wheels" >&2
cp "$HERE/requirements.txt" "$WORK/wheels/requirements.txt"

# -- the root filesystem --------------------------------------------------------------------------
mmdebstrap --variant=minbase --mode=root --format=directory \
    --include="$PACKAGES" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="sh '$HERE/customize.sh' \"\$1\" '$WORK/wheels' '$VERSION'" \
    bookworm "$WORK/rootfs" \
    "deb $MIRROR bookworm main" \
    "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY_MIRROR bookworm-security main" >&2

# -- one layer, byte-stable -----------------------------------------------------------------------
tar -C "$WORK/rootfs" --sort=name --numeric-owner --format=pax \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime \
    -cf "$WORK/layer.tar" .
rm -rf "$WORK/rootfs"

# -- the OCI image ------------------------------------------------------------------------------
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
umoci init --layout "$OUT"
umoci new --image "$OUT:$TAG"
umoci raw add-layer --image "$OUT:$TAG" \
    --history.created="$CREATED" \
    --history.created_by="deploy/image/build.sh (mmdebstrap bookworm minbase + $PACKAGES, pleg-doctor $VERSION)" \
    "$WORK/layer.tar"
umoci config --image "$OUT:$TAG" --no-history \
    --created="$CREATED" \
    --author="pleg-doctor" \
    --architecture=amd64 --os=linux \
    --config.user=0:0 \
    --config.workingdir=/ \
    --config.env=PATH=/opt/pleg-doctor/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env=LC_ALL=C.UTF-8 \
    --config.env=PYTHONDONTWRITEBYTECODE=1 \
    --config.entrypoint=/opt/pleg-doctor/bin/pleg-doctor \
    --config.cmd=watch --config.cmd=--listen=127.0.0.1:9977 \
    --config.label="org.opencontainers.image.source=$IMAGE_SOURCE" \
    --config.label="org.opencontainers.image.version=$VERSION" \
    --config.label="org.opencontainers.image.revision=$REVISION" \
    --config.label="org.opencontainers.image.created=$CREATED" \
    --config.label="org.opencontainers.image.licenses=Apache-2.0" \
    --config.label="org.opencontainers.image.title=pleg-doctor" \
    --config.label="org.opencontainers.image.base.name=debian:bookworm (mmdebstrap minbase)"
umoci gc --layout "$OUT"

DIGEST=$("$PYTHON" -c '
import json, sys
index = json.load(open(sys.argv[1] + "/index.json"))
(m,) = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == sys.argv[2]]
print(m["digest"])' "$OUT" "$TAG")
log "image $OUT:$TAG manifest $DIGEST"
if [ "$PRINT_DIGEST" = 1 ]; then
    echo "$DIGEST"
fi
