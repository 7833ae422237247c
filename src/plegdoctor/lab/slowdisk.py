"""A slow disk for the lab, without device-mapper or the nbd kernel module.

    sparse file --nbdkit (rate + delay filters)--> NBD over a socket pair (nbdkit is nbdfuse's child)
      --nbdfuse -C 1--> a regular file --losetup --direct-io=on--> /dev/loopN --mkfs.ext4--> mountpoint

Dials: bandwidth (`mb_per_s`, MB = 10^6 bytes; nbdkit's rate filter counts bits, so it gets
`8 * mb_per_s` M) and per-request latency (`write_latency_ms`, `read_latency_ms`, nbdkit's delay
filter). The bandwidth can be changed while the disk is up (nbdkit's `rate-file`), which the lab
uses to format the disk at full speed before throttling it.

Why these choices (found on Debian 12, nbdkit 1.32, libnbd 1.14):
- `nbdfuse -C 1`: with the default multi-conn (4 connections) nbdfuse 1.14 corrupts requests under
  parallel I/O ("NBD_CMD_WRITE: Bad message", then every request fails with ESHUTDOWN and nbdfuse
  aborts on an assertion). One connection is reliable.
- `losetup --direct-io=on`: the loop device then writes through to the FUSE file instead of
  keeping a second copy of every page in the page cache, so dirty data drains at the disk's speed.
- `mkfs.ext4 -E nodiscard`: discards of a FUSE-backed loop device are pointless and slow.
- The daemons run in their own session (a Ctrl-C of the lab must not kill them before the
  filesystem above them is unmounted), and every step is recorded in the lab state first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from plegdoctor.errors import UserError
from plegdoctor.lab.state import LabState, Resource, is_mounted, run_quiet
from plegdoctor.testbed.procs import descendants, read_proc

REQUIRED_TOOLS = {
    "nbdkit": "nbdkit",
    "nbdfuse": "libnbd-bin",
    "fusermount3": "fuse3",
    "losetup": "mount",
    "mkfs.ext4": "e2fsprogs",
}
UNLIMITED_BITS = "100G"


def missing_tools() -> list[str]:
    """Debian packages to install for the slow disk (empty when everything is there)."""
    return sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})


def host_problems() -> list[str]:
    """Why this host cannot run the slow disk (empty list when it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (loop devices, mounts, sysctls)")
    if not os.path.exists("/dev/fuse"):
        problems.append("/dev/fuse is missing (FUSE is not available)")
    if not os.path.exists("/dev/loop-control") and not os.path.exists("/dev/loop0"):
        problems.append("no loop devices (/dev/loop-control is missing)")
    pkgs = missing_tools()
    if pkgs:
        problems.append("missing tools: apt-get install -y " + " ".join(pkgs))
    return problems


@dataclass(frozen=True, slots=True)
class DiskSpec:
    """The dials of the slow disk."""

    size_gib: int = 16
    mb_per_s: float = 30.0
    write_latency_ms: float = 0.0
    read_latency_ms: float = 0.0

    def rate_bits(self) -> str:
        """nbdkit rate filter value (bits per second)."""
        return f"{max(1, round(self.mb_per_s * 8))}M"


class SlowDisk:
    """One slow disk under `<lab>/disk`, mounted at `mountpoint`. Use up() / down() or `with`."""

    def __init__(self, state: LabState, spec: DiskSpec, mountpoint: Path, name: str = "disk"):
        self.state = state
        self.spec = spec
        self.mountpoint = Path(mountpoint)
        self.dir = state.lab_dir / name
        self.image = self.dir / "disk.img"
        self.socket = self.dir / "nbd.sock"
        self.fuse_file = self.dir / "nbd"
        self.rate_file = self.dir / "rate"
        self.device = ""
        self._owned: list[Resource] = []

    # -- lifecycle -------------------------------------------------------------------------
    def up(self) -> SlowDisk:
        problems = host_problems()
        if problems:
            raise UserError("slow disk unavailable: " + "; ".join(problems))
        if is_mounted(str(self.mountpoint)):
            raise UserError(f"{self.mountpoint} is already mounted (run `pleg-doctor lab down` first)")
        # parents before children: teardown undoes the ledger in reverse
        self.state.record_absent_dirs("/run/mount", "/run/containerd", "/run/containerd/s")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        for stale in (self.image, self.socket, self.rate_file):
            stale.unlink(missing_ok=True)
        # a fresh sparse file every time: no data from a previous run can be flushed in this one
        with open(self.image, "wb") as f:
            f.truncate(self.spec.size_gib * 1024**3)
        self._write_rate(UNLIMITED_BITS)
        try:
            self._start_nbd()
            self._attach_loop()
            self._mkfs_and_mount()
            self._write_rate(self.spec.rate_bits())
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> list[str]:
        """Unmount, detach, stop the daemons (reverse order); return error lines."""
        errors: list[str] = []
        for res in reversed(self._owned):
            errors += self.state.undo(res)
        self._owned.clear()
        if not errors:
            self.image.unlink(missing_ok=True)
        return errors

    def __enter__(self) -> SlowDisk:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- dials -----------------------------------------------------------------------------
    def set_rate(self, mb_per_s: float | None) -> None:
        """Change the bandwidth while up (None = unthrottled)."""
        if mb_per_s is None:
            self._write_rate(UNLIMITED_BITS)
        else:
            self._write_rate(f"{max(1, round(mb_per_s * 8))}M")

    def _write_rate(self, bits: str) -> None:
        tmp = self.rate_file.with_suffix(".tmp")
        tmp.write_text(bits + "\n")
        os.replace(tmp, self.rate_file)  # nbdkit wants the file replaced atomically

    # -- steps -----------------------------------------------------------------------------
    def _own(self, res: Resource) -> Resource:
        self._owned.append(res)
        return res

    def _nbdkit_argv(self) -> list[str]:
        argv = [
            "nbdkit",
            "--exit-with-parent",
            "--filter=rate",
            "--filter=delay",
            "file",
            str(self.image),
            f"rate={self.spec.rate_bits()}",
            f"rate-file={self.rate_file}",
        ]
        if self.spec.write_latency_ms > 0:
            argv.append(f"delay-write={int(self.spec.write_latency_ms)}ms")
        if self.spec.read_latency_ms > 0:
            argv.append(f"delay-read={int(self.spec.read_latency_ms)}ms")
        return argv

    def _start_nbd(self) -> None:
        """nbdfuse runs nbdkit as its child (`[ nbdkit ... ]`, socket activation).

        nbdkit 1.32 as packaged here arms PR_SET_PDEATHSIG(SIGTERM) even without
        --exit-with-parent, so a server started by the lab process would shut down (every
        request then fails with ESHUTDOWN) as soon as the lab process exits, e.g. after
        `lab up`. Parented by nbdfuse it lives exactly as long as the FUSE mount.
        """
        self.fuse_file.touch(exist_ok=True)
        argv = ["nbdfuse", "-C", "1", str(self.fuse_file), "[", *self._nbdkit_argv(), "]"]
        fuse = self._own(self.state.spawn("nbdfuse", argv, self.dir / "nbdfuse.log"))
        _wait_for(lambda: is_mounted(str(self.fuse_file)), 15, f"nbdfuse did not mount {self.fuse_file}")
        # the mount appears before nbdfuse has finished the NBD handshake with its nbdkit: until
        # then the file reads as empty, and losetup would attach a useless 0-byte device
        size = self.spec.size_gib * 1024**3
        _wait_for(lambda: _size(self.fuse_file) == size, 30, f"{self.fuse_file} never showed the disk's size")
        kids = [p for p in descendants([fuse.pid]) if proc_comm(p) == "nbdkit"]
        if kids:
            self._own(self.state.track_process("nbdkit", kids[0]))
        # recorded last, so teardown unmounts it first (nbdfuse and its nbdkit then exit by themselves)
        self._own(self.state.add(Resource("fuse", "nbdfuse file", path=str(self.fuse_file))))
        self._widen_fuse_queue()

    def _widen_fuse_queue(self) -> None:
        """Let requests queue in the block layer, as on a real disk, instead of inside FUSE.

        FUSE admits 12 background requests per connection by default; past that the loop
        device's worker sleeps in `fuse_get_req`, so every stall of the lab would show kernel
        tasks blocked in FUSE code, which is evidence of a network filesystem hang, not of a
        slow disk. With a wide FUSE queue the loop worker submits and the waits happen where
        they happen on a real disk (request queue, writeback throttling, journal).
        """
        conn_root = Path("/sys/fs/fuse/connections")
        if not conn_root.is_dir():
            return
        if not is_mounted(str(conn_root)):
            rc, _ = run_quiet(["mount", "-t", "fusectl", "fusectl", str(conn_root)], timeout=30)
            if rc != 0:
                return
            self._own(self.state.add(Resource("mount", "fusectl", path=str(conn_root))))
        conn = conn_root / str(os.stat(self.fuse_file).st_dev)
        for name, value in (("max_background", "256"), ("congestion_threshold", "192")):
            with contextlib.suppress(OSError):
                (conn / name).write_text(value)

    def _attach_loop(self) -> None:
        try:
            cp = subprocess.run(
                ["losetup", "--direct-io=on", "--find", "--show", str(self.fuse_file)],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except subprocess.TimeoutExpired:
            raise UserError("losetup: no answer within 30s") from None
        device = cp.stdout.strip().splitlines()[-1] if cp.stdout.strip() else ""
        if device.startswith("/dev/loop"):
            # attached (warnings or not): record it first, so it is detached whatever happens next
            self._own(self.state.add(Resource("loop", "slow disk", path=device, backing=str(self.fuse_file))))
            self.device = device
        if cp.returncode != 0 or not device.startswith("/dev/loop"):
            raise UserError(f"losetup failed: {(cp.stderr or cp.stdout).strip()}")

    def _mkfs_and_mount(self) -> None:
        rc, out = run_quiet(
            ["mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", self.device],
            timeout=300,
        )
        if rc != 0:
            raise UserError(f"mkfs.ext4 on {self.device} failed: {out}")
        rc, out = run_quiet(["mount", "-t", "ext4", self.device, str(self.mountpoint)], timeout=60)
        if rc != 0:
            raise UserError(f"mount {self.device} {self.mountpoint} failed: {out}")
        self._own(self.state.add(Resource("mount", "slow disk", path=str(self.mountpoint))))

    def block_device_name(self) -> str:
        """`loopN`, as in /proc/diskstats."""
        return os.path.basename(self.device)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def proc_comm(pid: int) -> str:
    info = read_proc(pid)
    return info.comm if info else ""


def _wait_for(cond: object, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise UserError(message)
