"""PD8xx: generic waits that hold on any Go daemon and any version (long waits, lock convoys,
RPC client waits, symptom paths, stuck CLIs), beneath the known signatures of the other
families.

The signature rules (PD2xx-PD7xx) know named locks and calls of named versions. These rules
reason from what any goroutine dump shows: how long a goroutine has waited (`[..., N
minutes]`), how many wait on the same lock (the address or the receiver), which RPC client
call has no answer, which symptom path (a CRI list/status handler, the kubelet relist) is
caught in which subsystem. Each hit names its class by *mechanism* (`MECHANISMS`, first match
wins), so a build that has never seen a version still answers with the right family of
cause, and `unknown` — never nothing — when the mechanism is not one we can name.

They are declared `generic=True`: when a signature rule explains the same wait (a chain that
shares the generic hit's deepest goroutine), the diagnosis keeps the signature finding and
drops the generic one, so the same evidence is never counted twice. Their weights are lower
than the signature rules': a known signature sharpens the class; its absence lowers
confidence, never the answer to nothing.
"""

# Importing the modules registers their rules.
from plegdoctor.rules.generic import (
    mechanisms,  # noqa: F401
    named,  # noqa: F401
    waits,  # noqa: F401
)
