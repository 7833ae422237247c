"""Session-wide test settings.

PLEG_DOCTOR_DEBUG=1 makes a rule or an analysis that raises fail the test instead of being
recorded in `RuleContext.errors` (the production behaviour, which keeps one bug from hiding
what the other rules found). Tests that check the production behaviour unset it themselves.

PLEG_DOCTOR_FASTSCAN_SO=path loads the scanner's compiled loop from that file instead of the
installed one (`make asan`: a build under AddressSanitizer and UBSan).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["PLEG_DOCTOR_DEBUG"] = "1"
# tests/ on sys.path, so test modules share helpers (`from rulecheck import assert_fires`)
sys.path.insert(0, str(Path(__file__).resolve().parent))

if os.environ.get("PLEG_DOCTOR_FASTSCAN_SO"):  # before plegdoctor.parsers.logs.scanner imports it
    import importlib.util

    _spec = importlib.util.spec_from_file_location("plegdoctor._fastscan", os.environ["PLEG_DOCTOR_FASTSCAN_SO"])
    assert _spec is not None and _spec.loader is not None
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    sys.modules["plegdoctor._fastscan"] = _mod
