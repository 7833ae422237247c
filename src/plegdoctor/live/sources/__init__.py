"""Every evidence source of the live package, in ONE table: `SOURCES`.

Each line (`base.NodeSource`) says the bundle member, the evidence kind (which parser reads
it: `parsers.PARSERS[kind]`), what is read on the node, its bound and its deadline, and the
function that collects it; a source watch samples every period also names its /proc file and
the function that turns a parsed sample into exported figures. `collect` writes the bundle by
walking SOURCES in order (the moment's evidence first: tasks and kernel stacks, then the
samples, the runtime, its config, versions, the kernel log, goroutine dumps, logs);
`samplers.NodeSampler` reads the sampled lines every watch period and parses them with their
parser (the same code `analyze` runs), and the exporter publishes what their `update` put
in the snapshot.

Adding a sampled /proc file: a module here (its `update`, and `metrics` with their names when it
feeds metrics), one line in SOURCES (`sample=`, `collect=write_series`, `update=`, `metrics=`),
the parser in plegdoctor/parsers if the format is new (with its line in parsers.PARSERS), and a
test (tests/test_live_sources.py). Figures of a new kind need a field in samples.NodeSnapshot;
the exporter publishes every sampled source's `metrics` and lists their names in METRIC_NAMES.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import Metric

from plegdoctor.live.containerd_config import MAX_CONFIG_BYTES, MAX_CONFIG_FILES
from plegdoctor.live.gobinary import MAX_SCAN
from plegdoctor.live.procfs import MAX_PROC_STAT, MAX_SMALL
from plegdoctor.live.samples import NodeSnapshot
from plegdoctor.live.sources import (
    config,
    diskstats,
    dmesg,
    goroutines,
    logs,
    meminfo,
    mounts,
    node,
    psi,
    runtime,
    runtime_status,
    stacks,
    tasks,
    versions,
)
from plegdoctor.live.sources.base import MANIFEST_KIND, CollectOptions, CollectRun, NodeSource, write_series
from plegdoctor.live.tools import MAX_LOG_BYTES

__all__ = [
    "SOURCES",
    "CollectOptions",
    "CollectRun",
    "NodeSource",
    "by_name",
    "metric_families",
    "metric_names",
    "sampled",
]

_LOG = "journalctl -u <unit> (fixed path), else the file its stderr goes to, else /var/log/<unit>.log"

# NodeSource(name, member, kind, reads, bound, unit, deadline, collect, [sample, update, metrics, metric_names])
SOURCES: tuple[NodeSource, ...] = (
    # the moment's evidence first (a stall may end while we collect)
    NodeSource(
        "tasks", "tasks/ps.txt", "ps", "/proc/*/task/*/{stat,wchan}", tasks.MAX_TASKS, "tasks", "step", tasks.collect
    ),
    NodeSource(
        "kernel-stacks", "tasks/stacks.txt", "proc-stack", "/proc/*/task/*/stack", MAX_SMALL, "bytes per task",
        "step", stacks.collect,
    ),
    NodeSource(
        "runtime-status", "tasks/runtime-status.txt", "ps",
        "/proc/<runtime pid>/{status,cgroup}, /sys/fs/cgroup/<its cgroup>/{cgroup.events,cgroup.freeze}",
        MAX_SMALL, "bytes per file", "step", runtime_status.collect,
    ),
    NodeSource(
        "node-load", "manifest.json#node_load", MANIFEST_KIND, "/proc/loadavg", MAX_SMALL, "bytes", None,
        node.collect_load,
    ),
    NodeSource(
        "boot-time", "manifest.json#boot_time", MANIFEST_KIND, "/proc/stat btime", MAX_PROC_STAT, "bytes", None,
        node.collect_boot_time,
    ),
    # sampled every watch period; collect writes the recent series (watch's, or two samples of its own)
    *(
        NodeSource(
            f"psi-{res}", f"proc/pressure/{res}", "psi", f"/proc/pressure/{res}", MAX_SMALL, "bytes per sample",
            None, write_series, sample=f"pressure/{res}", update=psi.updater(res), metrics=psi.metrics,
            metric_names=psi.METRIC_NAMES,
        )
        for res in psi.RESOURCES
    ),
    NodeSource(
        "diskstats", "proc/diskstats", "diskstats", "/proc/diskstats", MAX_SMALL * 16, "bytes per sample", None,
        write_series, sample="diskstats", update=diskstats.update, metrics=diskstats.metrics,
        metric_names=diskstats.METRIC_NAMES,
    ),
    NodeSource(
        "meminfo", "proc/meminfo", "meminfo", "/proc/meminfo", MAX_SMALL, "bytes per sample", None, write_series,
        sample="meminfo", update=meminfo.update, metrics=meminfo.metrics, metric_names=meminfo.METRIC_NAMES,
    ),
    NodeSource(
        "vmstat", "proc/vmstat", "vmstat", "/proc/vmstat", MAX_SMALL, "bytes per sample", None, write_series,
        sample="vmstat",
    ),
    # the runtime: the process serving the CRI socket (never a process picked by name)
    NodeSource(
        "runtime", "manifest.json#runtime", MANIFEST_KIND,
        "SO_PEERCRED of the CRI socket; CRI Version and ListContainers (not during a stall)", 2, "calls",
        None, runtime.collect,
    ),
    NodeSource(
        "mounts", "proc/mountinfo", "mounts", "/proc/<runtime pid>/mountinfo", mounts.MAX_MOUNTINFO, "bytes",
        "step", mounts.collect,
    ),
    NodeSource(
        "containerd-config", "config/{containerd.toml,imports/<i>-<name>}", "containerd-config",
        "containerd's config and its imports, through /proc/<pid>/root", MAX_CONFIG_BYTES * MAX_CONFIG_FILES,
        "bytes", None, config.collect,
    ),
    NodeSource(
        "versions", "versions.txt", "versions",
        "Go build info and ELF symbols of the runtime's binaries (read, never run); CRI Version", MAX_SCAN,
        "bytes scanned per binary", "step", versions.collect,
    ),
    NodeSource(
        "dmesg", "kernel/dmesg.txt", "dmesg", "/dev/kmsg (dmesg at its fixed path only when /dev/kmsg is unreadable)",
        dmesg.KMSG_RECORDS, "records", "step", dmesg.collect,
    ),
    # goroutine dumps: the only thing that touches the node (SIGUSR1)
    NodeSource(
        "goroutines-containerd", "goroutines/containerd-<pid>.{pprof-debug2.txt,stacks.log}", "goroutine-dump",
        "pprof debug=2 on containerd's debug socket, else SIGUSR1 and its containerd.<pid>.stacks.log",
        MAX_LOG_BYTES, "bytes", "dump", goroutines.collect_containerd,
    ),
    NodeSource(
        "goroutines-shims", "goroutines/containerd-shim-<pid>.log", "goroutine-dump",
        "SIGUSR1 to each shim in containerd's mount namespace; the dump read back from containerd's log",
        goroutines.SHIM_LOG_BYTES, "bytes of log", "dump", goroutines.collect_shims,
    ),
    NodeSource(
        "containerd-log", "logs/containerd.{journal,log}", "containerd-log", _LOG.replace("<unit>", "containerd"),
        MAX_LOG_BYTES, "bytes", "step", logs.collect_containerd,
    ),
    NodeSource(
        "kubelet-log", "logs/kubelet.{journal,log}", "kubelet-log", _LOG.replace("<unit>", "kubelet"),
        MAX_LOG_BYTES, "bytes", "step", logs.collect_kubelet,
    ),
)  # fmt: skip


def sampled() -> tuple[NodeSource, ...]:
    """The sources watch reads every period."""
    return tuple(s for s in SOURCES if s.sample is not None)


def by_name(name: str) -> NodeSource:
    return next(s for s in SOURCES if s.name == name)


def metric_families() -> tuple[Callable[[NodeSnapshot], Iterator[Metric]], ...]:
    """The sampled sources' metric functions, each once, in SOURCES order (live/exporter serves them)."""
    return tuple(dict.fromkeys(s.metrics for s in sampled() if s.metrics is not None))


def metric_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for s in sampled() for n in s.metric_names))
