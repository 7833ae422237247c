"""Session-wide test settings.

PLEG_DOCTOR_DEBUG=1 makes a rule or an analysis that raises fail the test instead of being
recorded in `RuleContext.errors` (the production behaviour, which keeps one bug from hiding
what the other rules found). Tests that check the production behaviour unset it themselves.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["PLEG_DOCTOR_DEBUG"] = "1"
# tests/ on sys.path, so test modules share helpers (`from rulecheck import assert_fires`)
sys.path.insert(0, str(Path(__file__).resolve().parent))
