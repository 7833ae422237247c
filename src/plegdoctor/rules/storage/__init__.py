"""PD3xx: storage I/O (PSI, diskstats, dirty pages, fsync waits, slow du, network storage)."""

# Importing the modules registers their rules.
from plegdoctor.rules.storage import (
    io,  # noqa: F401
    netfs,  # noqa: F401
)
