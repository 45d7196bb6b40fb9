"""Server errors are logged, but not one line per refused request."""

from __future__ import annotations

import logging

from onlearn.errors import Overloaded, StoreUnavailable
from serving.errors import ThrottledLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_503s_logs_one_line_per_kind_and_path_every_interval(caplog):
    clock = Clock()
    throttled = ThrottledLog(every_s=10.0, clock=clock)
    lag = Overloaded("model 'm' is 20000 labels behind")
    with caplog.at_level(logging.WARNING, logger="serving.errors"):
        logged = [throttled.warning("/models/m/feedback", "POST", lag) for _ in range(5000)]
        # Another kind, or another path, is not hidden behind the first.
        assert throttled.warning("/models/m/feedback", "POST", StoreUnavailable("down"))
        assert throttled.warning("/models/n/feedback", "POST", lag)
        clock.now = 10.0
        assert throttled.warning("/models/m/feedback", "POST", lag)
    assert logged.count(True) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[-1].endswith("(4999 more like it in the last 10 s)"), lines[-1]
    assert "more like it" not in lines[0]
