#!/bin/sh
# Install what the integration tests need (Debian 12), and gcc with the Python headers that
# build the scanner's compiled loop (CI requires it: PLEG_DOCTOR_REQUIRE_NATIVE in .ci/run).
# Idempotent; starts no service: the tests start their own containerd, docker-registry and
# Prometheus on unique sockets and ports.
set -eu
export DEBIAN_FRONTEND=noninteractive
PKGS="gcc python3-dev containerd runc docker-registry prometheus busybox-static chromium fonts-liberation nbdkit libnbd-bin fuse3 e2fsprogs mmdebstrap umoci skopeo"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    # policy-rc.d (exit 101) keeps the packages' init scripts from starting daemons here
    had_policy=0
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ "$had_policy" = 1 ] || printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get install -y --no-install-recommends $missing
    [ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
fi
for b in gcc containerd containerd-shim-runc-v2 runc docker-registry prometheus promtool busybox chromium nbdkit nbdfuse mkfs.ext4 losetup mmdebstrap umoci skopeo ctr; do
    command -v "$b" >/dev/null || { echo "install-deps: $b missing after install" >&2; exit 1; }
done
echo "install-deps: ok ($PKGS)"
