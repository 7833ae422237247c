"""PD301-PD306: disk pressure (PSI, diskstats, dirty writeback), runtime fsync, slow du, CRI deadlines."""

from __future__ import annotations

from collections.abc import Iterator

from plegdoctor.analysis.pressure import dirty_high
from plegdoctor.knowledge import ISSUE_9770
from plegdoctor.model import EventKind, RootCauseClass, Severity
from plegdoctor.rules import fixes
from plegdoctor.rules.registry import Hit, RuleContext, rule
from plegdoctor.rules.signals import (
    chain_has_any,
    events,
    for_minutes,
    link,
    links_with,
    placed_weight,
    plural,
    stall_text,
    step_hit,
)

C = RootCauseClass
PSI_DOC = "https://docs.kernel.org/accounting/psi.html"
IOSTATS_DOC = "https://docs.kernel.org/admin-guide/iostats.html"
K8S_94829 = "https://github.com/kubernetes/kubernetes/issues/94829"


@rule(
    "PD301",
    "psi-io-pressure",
    title="Node I/O pressure (PSI) is high",
    severity=Severity.WARNING,
    cls=C.DISK_IO_PRESSURE,
    fix=(
        "Find the writers (iotop -ao, pidstat -d 1, /sys/fs/cgroup/*/io.stat) and move them off containerd's "
        "disk or cap them (cgroup v2 io.max); lower dirty limits (vm.dirty_bytes=256MiB, "
        "vm.dirty_background_bytes=64MiB) so flushes stay short."
    ),
    references=(PSI_DOC, ISSUE_9770),
    role="cause",
    reads=("relists", "events", "pressure"),
    proof="pressure",
)
def psi_io_pressure(ctx: RuleContext) -> Iterator[Hit]:
    """Detects high I/O pressure in `/proc/pressure/io`: `full` avg10/avg60 >= 20 % (all
    non-idle tasks stalled on I/O that share of the time) or `some` >= 40 %.

    Why it matters: containerd's metadata commits, content commits, status checkpoints and
    overlay unmounts all end in a flush of the same disk. When the disk is saturated each of
    them takes seconds to minutes, and they run under locks the relist needs.

    Example evidence::

        some avg10=78.12 avg60=64.40 avg300=31.02 total=812345678
        full avg10=71.90 avg60=58.33 avg300=27.45 total=701234567

    Fix: find and move or throttle the writers; lower dirty limits.
    """
    pa = ctx.pressure
    if pa is None:
        return
    full, some = pa.io_peak("full"), pa.io_peak("some")
    peak, which = (full, "full") if full and full.value >= 20 else (some, "some")
    threshold = 20.0 if which == "full" else 40.0
    if peak is None or peak.value < threshold:
        return
    figure = f"PSI io {which} {peak.window} {peak.value:.0f}%{stall_text(peak.in_gap)}"
    yield step_hit(
        f"{figure}: tasks stall on I/O",
        placed_weight(0.3 + min(0.3, (peak.value - threshold) / 100.0), peak.in_gap, 0.1),
        link("pressure", "kernel", f"{figure}: tasks stall on I/O", (peak.ref,), tags=("io-pressure",)),
        facts={"psi_io": peak.value, "which": which},
    )


@rule(
    "PD302",
    "disk-saturated",
    title="A disk is saturated (diskstats/iostat: utilisation and write latency)",
    severity=Severity.WARNING,
    cls=C.DISK_IO_PRESSURE,
    fix=(
        "Put /var/lib/containerd on its own (faster) disk or move heavy writers to volumes on another disk; "
        "cap writers with cgroup io.max; lower dirty limits (vm.dirty_bytes=256MiB, "
        "vm.dirty_background_bytes=64MiB)."
    ),
    references=(IOSTATS_DOC, ISSUE_9770),
    role="cause",
    reads=("relists", "events", "diskstats", "disk_samples"),
    proof="pressure",
)
def disk_saturated(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a block device at >= 90 % utilisation with a long write queue or latency
    (w_await >= 100 ms or aqu-sz >= 8), computed from two `/proc/diskstats` snapshots with the
    iostat formulas or read from `iostat -x`.

    Why it matters: every flush containerd does while holding a lock (bbolt commit, blob
    commit, status checkpoint, overlay umount syncfs) waits behind the device queue.

    Example evidence (two snapshots 5 s apart)::

        8  0 sda 10 0 80 5 120000 300 9600000 4800000 64 5000 4900000
        8  0 sda 10 0 80 5 120150 300 9650000 4830000 71 10000 5250000

    Fix: separate disk, io.max on heavy writers, lower dirty limits.
    """
    peak = ctx.pressure.worst_disk() if ctx.pressure is not None else None
    if peak is None:
        return
    s, inside = peak.sample, peak.in_gap
    long_queue = (s.w_await or 0) >= 100 or (s.aqu_sz or 0) >= 8
    if s.util < 90 or not long_queue:
        return
    await_txt = f", w_await {s.w_await:.0f} ms" if s.w_await is not None else ""
    aqu_txt = f", aqu-sz {s.aqu_sz:.1f}" if s.aqu_sz is not None else ""
    yield step_hit(
        f"{s.device} saturated: {s.util:.0f}% util{await_txt}{stall_text(inside)}",
        placed_weight(0.35 + (0.1 if (s.w_await or 0) >= 1000 else 0.0), inside, 0.1),
        link(
            "disk",
            "kernel",
            f"{s.device} {s.util:.0f}% busy{await_txt}{aqu_txt}, {s.wkb_per_s / 1024:.1f} MB/s written"
            f"{stall_text(inside)}",
            (s.ref,),
            tags=("disk-saturated",),
        ),
        facts={"device": s.device, "util": s.util, "w_await": s.w_await},
    )


@rule(
    "PD303",
    "dirty-writeback-backlog",
    title="Gigabytes of dirty pages wait for writeback",
    severity=Severity.WARNING,
    cls=C.DISK_IO_PRESSURE,
    fix=fixes.dirty_limits_fix(),
    references=("https://docs.kernel.org/admin-guide/sysctl/vm.html", ISSUE_9770),
    role="cause",
    reads=("relists", "events", "meminfo"),
    proof="pressure",
)
def dirty_writeback_backlog(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a large dirty/writeback backlog in `/proc/meminfo` (`Dirty:` + `Writeback:` >=
    1 GiB, or >= 10 % of MemTotal).

    Why it matters: an fsync, fdatasync or syncfs on a filesystem has to wait for that
    filesystem's dirty data ahead of it (ext4 journal ordering, overlay umount syncfs of the
    whole upper filesystem). With the default ratio-based limits a large node accumulates
    gigabytes; each flush containerd makes under a lock then takes as long as writing them.
    In the project lab, lowering vm.dirty_bytes to 256 MiB and vm.dirty_background_bytes to
    64 MiB brought the worst relist stall from ~30 s to ~1 s.

    Example evidence::

        Dirty:           3145728 kB
        Writeback:        262144 kB

    Fix: lower the dirty limits; it removes the fsync-behind-writeback link.
    """
    peak = ctx.pressure.dirty_top() if ctx.pressure is not None else None
    if peak is None or not dirty_high(peak.sample):
        return
    m, inside = peak.sample, peak.in_gap
    total = m.dirty_kb + m.writeback_kb
    yield step_hit(
        f"{total / 1024 / 1024:.1f} GiB dirty/writeback{stall_text(inside)}",
        placed_weight(0.25 + (0.1 if total >= 4 * 1024 * 1024 else 0.0), inside, 0.05),
        link(
            "memory",
            "kernel",
            f"{m.dirty_kb / 1024:.0f} MiB dirty + {m.writeback_kb / 1024:.0f} MiB under writeback{stall_text(inside)}",
            (m.ref,),
            tags=("dirty-pages",),
        ),
        facts={"dirty_kb": m.dirty_kb, "writeback_kb": m.writeback_kb},
    )


@rule(
    "PD304",
    "runtime-goroutine-in-fsync",
    title="A containerd goroutine sits in fsync/fdatasync for minutes",
    severity=Severity.WARNING,
    cls=C.FSYNC_IO_PRESSURE,
    fix=" ".join([fixes.dirty_limits_fix(), fixes.separate_disk_fix()]),
    references=(ISSUE_9770, "https://github.com/containerd/containerd/pull/10128"),
    role="cause",
    reads=("dumps",),
)
def runtime_goroutine_in_fsync(ctx: RuleContext) -> Iterator[Hit]:
    """Detects a runtime goroutine in `fsync`/`fdatasync` (`syscall.Fsync`, `syscall.Fdatasync`,
    status `syscall, N minutes`) outside the bbolt and status-lock chains PD206/PD207 cover,
    for example a content commit of an image pull or a snapshot sync.

    Why it matters: a flush that takes minutes means the disk cannot absorb the write load;
    any lock taken around that flush turns into a stall of the CRI calls behind it.

    Example evidence::

        goroutine 1268 [syscall, 2 minutes]:
        syscall.Syscall(0x4a, ...)
        syscall.Fsync(...)
        os.(*File).Sync(...)

    Fix: lower dirty limits, separate disk for /var/lib/containerd.
    """
    seen: set[tuple[str, int | None]] = set()
    for chain, lk in links_with(ctx, "fsync", "fdatasync"):
        if chain_has_any(chain, "bbolt-writer", "status-lock"):
            continue
        key = (lk.process, lk.goroutine)
        if key in seen:
            continue
        seen.add(key)
        minutes = lk.wait_minutes or chain.max_wait_minutes or 0
        if minutes < 1 and chain.blocked == 0:
            continue
        yield Hit(
            title=f"{lk.process} goroutine {lk.goroutine} in {'fsync' if 'fsync' in lk.tags else 'fdatasync'}"
            + for_minutes(minutes)
            + (f", {plural(chain.blocked, 'goroutine')} behind it" if chain.blocked else ""),
            evidence=lk.evidence,
            weight=0.4 + (0.1 if minutes >= 1 else 0.0) + (0.1 if chain.blocked else 0.0),
            chain=chain,
        )


@rule(
    "PD305",
    "kubelet-du-slow",
    title="The kubelet's disk usage scans (du/find) time out",
    severity=Severity.WARNING,
    cls=C.DISK_IO_PRESSURE,
    fix=(
        "The disk holding /var/lib/kubelet or /var/lib/containerd is too slow for metadata scans: find the "
        "heavy writers and readers (iotop, pidstat -d), move them to another disk or cap them with io.max."
    ),
    references=("https://github.com/kubernetes/kubernetes/issues/23255",),
    role="cause",
    reads=("events",),
)
def kubelet_du_slow(ctx: RuleContext) -> Iterator[Hit]:
    """Detects kubelet messages that its filesystem usage scans (`du`, `find` on volumes or
    container log directories) were killed or took too long.

    Why it matters: metadata scans are cheap on a healthy disk; when they time out the disk
    is usually saturated, and every fsync containerd makes is then slow too. It is a hint,
    not a measurement: PSI and diskstats confirm it.

    Example evidence::

        W0602 05:48:21.101 1679 fsHandler.go:131] du and find on following dirs took 41.2s: [...]

    Fix: find and move or throttle the heavy I/O users.
    """
    evs = events(ctx, EventKind.KUBELET_DU_KILLED)
    if not evs:
        return
    yield step_hit(
        f"kubelet disk usage scans slow or killed ({plural(len(evs), 'time')})",
        0.3 + min(0.15, 0.03 * len(evs)),
        link("log", "kubelet", "kubelet's du/find scans of volumes are slow or killed", (evs[0].ref,)),
        evidence=(e.ref for e in evs[:5]),
    )


# CRI calls the relist and the kubelet's runtime health check make: a timeout of one of these
# means the runtime itself did not answer (ExecSync, PullImage, stats calls time out for their own reasons)
_RELIST_PATH_CALLS = frozenset(
    {"ListContainers", "ListPodSandbox", "ContainerStatus", "PodSandboxStatus", "Status", "Version"}
)


@rule(
    "PD306",
    "cri-deadline-exceeded",
    title="CRI calls from the kubelet hit DeadlineExceeded",
    severity=Severity.WARNING,
    cls=C.DISK_IO_PRESSURE,
    fix=(
        "The runtime did not answer within the kubelet's runtime-request-timeout. Collect what the runtime "
        "waited on: containerd goroutines (kill -USR1 $(pidof containerd)), /proc/pressure/io, "
        "/proc/diskstats twice 5 s apart."
    ),
    references=(K8S_94829, ISSUE_9770),
    role="cause",
    reads=("events",),
)
def cri_deadline_exceeded(ctx: RuleContext) -> Iterator[Hit]:
    """Detects kubelet CRI calls (ListContainers, ListPodSandbox, ContainerStatus,
    PodSandboxStatus) that failed with `DeadlineExceeded`.

    Why it matters: the kubelet gives each CRI call 2 minutes (`runtimeRequestTimeout`). A
    list call that times out means containerd was blocked for at least that long; on most
    nodes that is a disk problem, but this alone does not say which one, so the rule carries
    little weight and the diagnosis asks for the evidence that would.

    Example evidence::

        E0602 05:50:07.2 1679 remote_runtime.go:390] "ListContainers with filter from runtime service failed"
        err="rpc error: code = DeadlineExceeded desc = context deadline exceeded"

    Not counted: calls off the relist's path. An `ExecSync` that hits DeadlineExceeded is a
    probe command that outlived its `timeoutSeconds` (`failed to exec in container: timeout 1s
    exceeded`), not a runtime that stopped answering; image pulls, exec and stats calls
    likewise.

    Fix: collect containerd goroutines and disk pressure while it happens.
    """
    relist_error = EventKind.RELIST_ERROR
    # A kubelet repeats its errors: each code, and each code and error text, is read once. A
    # code that says "deadline" (DeadlineExceeded) decides alone; otherwise the error text may.
    by_code: dict[str, bool] = {}
    by_text: dict[tuple[str, str], bool] = {}
    evs = []
    seen_methods: set[str] = set()
    for e in events(ctx, EventKind.CRI_CALL_FAILED, EventKind.RELIST_ERROR):
        attrs = e.attrs
        method = attrs.get("method")
        if e.kind != relist_error and method not in _RELIST_PATH_CALLS:
            continue
        code = str(attrs.get("code", ""))
        hit = by_code.get(code)
        if hit is None:
            hit = by_code[code] = "deadline" in code.lower()
        if not hit:
            text = (code, str(attrs.get("error", "")))
            hit = by_text.get(text)
            if hit is None:
                hit = by_text[text] = "deadline" in text[0].lower() + text[1].lower()
        if hit:
            evs.append(e)
            seen_methods.add(str(method or "relist"))
    if not evs:
        return
    methods = sorted(seen_methods)
    yield step_hit(
        f"{', '.join(methods)} timed out (DeadlineExceeded) {plural(len(evs), 'time')}",
        0.15,
        link("log", "kubelet", f"{methods[0]} calls to the runtime time out", (evs[0].ref,)),
        evidence=(e.ref for e in evs[:5]),
    )
