"""The compiled helpers (src/plegdoctor/_fastscan*.c), or None.

The install builds them when a C compiler and the Python headers are at hand
(pyproject.toml: an optional extension); each caller keeps a Python path that gives the
same result, and tests compare both. PLEG_DOCTOR_NO_NATIVE=1 turns them off (what the
benches and tests use to run the Python paths).
"""

from __future__ import annotations

import os

try:
    from plegdoctor import _fastscan as fast
except ImportError:  # pragma: no cover - exercised where no C compiler was at hand
    fast = None  # type: ignore[assignment]
if os.environ.get("PLEG_DOCTOR_NO_NATIVE", "") == "1":
    fast = None  # type: ignore[assignment]
