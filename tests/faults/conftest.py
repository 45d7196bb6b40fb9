"""Fault tests: real ``onlearn serve`` processes killed, starved of their store, or left with
claimed work by a labeller that vanished. Each test starts the servers it breaks."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the root there
    sys.path.insert(0, str(ROOT))
