"""`no_gc()`: the cyclic garbage collector paused around bulk work of the goroutine engine."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: parsing allocates millions of tuples and no
    cycles, and the collector's passes over them cost ~20% of the time (measured)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
