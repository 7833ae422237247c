"""PD9xx: process states (T, D, Z; wchan) from ps and /proc, frozen runtimes, node resources.

Rules here read TaskState records (ps tables, /proc/<pid>/{stat,status,wchan}, the
collector's kernel stacks), cgroup freezer states, the bundle's capture trigger (the relist
probe's stalled call), meminfo, PSI, load average and kernel OOM kills.

Where a D-state thread waits is named by the shared kernel-function table
(plegdoctor.kernelnames: class hints nfs, syncfs, fsync, io-wait, freezer, ...), with a local
fallback of the same names (`_LOCAL_HINTS`) for builds without it.
"""

# Importing the modules registers their rules.
from plegdoctor.rules.process import (
    procs,  # noqa: F401
    resources,  # noqa: F401
    states,  # noqa: F401
)
