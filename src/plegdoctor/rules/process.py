"""PD9xx: process states (D, T, Z; wchan) from ps and /proc, frozen runtimes, node resources."""

from __future__ import annotations
