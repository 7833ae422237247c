"""PD1xx: the kubelet and its PLEG: the symptom itself, stalls inside the kubelet, slow relists."""

# Importing the modules registers their rules.
from plegdoctor.rules.kubelet import (
    internals,  # noqa: F401
    relist,  # noqa: F401
)
