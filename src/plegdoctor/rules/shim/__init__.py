"""PD4xx: the shim (containerd-shim-runc-v2), runc and CNI: processes containerd calls and waits for."""

# Importing the modules registers their rules.
from plegdoctor.rules.shim import (
    calls,  # noqa: F401
    runc_cni,  # noqa: F401
)
