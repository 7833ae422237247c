"""PD8xx: generic waits that hold on any Go daemon and any version (long waits, lock convoys,
RPC client waits, syscalls), beneath the known signatures of the other families."""

from __future__ import annotations
