"""PD6xx: kernel evidence (hung-task traces, task states and kernel stacks).

Where a stuck task waits is named by plegdoctor.kernelnames (the first frame that is not a
scheduler or generic wait helper, with its class hint: io-wait, fsync, syncfs, nfs, freezer,
srcu, netdev, cgroup); the rules below match those hints and their own signature frames.
"""

# Importing the modules registers their rules.
from plegdoctor.rules.kernel import (
    hung,  # noqa: F401
    stuck,  # noqa: F401
)
