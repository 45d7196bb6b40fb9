"""Drift seen in the labels a sampler bought: more errors than the model's confidence promised.

The labels a strategy buys are not a random sample: they are the uncertain cases, where a model
errs often in any case. Their raw error rate says little; the gap between each error and the
error the model *expected* does. For a bought label with predicted class ``k`` and
probability ``p_k``, the surprise is

    r = [k != y] - (1 - p_k)

whose mean is 0 for a calibrated model whatever the selection (the selection only looks at the
probabilities). After a concept change the model is wrong where it was sure, and ``r``
climbs. A one-sided CUSUM (Page 1954), ``g = max(0, g + r - slack)``, raises an alarm when
``g > threshold`` and starts again from 0.

With the defaults (slack 0.1, threshold 8) ten confident errors (p = 0.9) in a row, or
about 40 bought labels with 30 points more errors than promised, raise an alarm. A calibrated
model raises a false alarm about once per 11 000 bought labels where it is most unsure
(probabilities of 0.5 to 0.6, measured over 500 000 labels), once per 70 000 over 0.5 to 1;
a model that is a little overconfident (``r`` of a few hundredths on average) does not. A false alarm costs little: it opens the credit line,
which is repaid (the bound ``budget * n + credit`` holds whatever the alarms).

>>> detector = SurpriseDetector()
>>> [detector.update({"a": 0.9, "b": 0.1}, "b") for _ in range(10)].index(True)  # sure, wrong
9
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from onlearn.active._check import check_non_negative

__all__ = ["SurpriseDetector"]


class SurpriseDetector:
    """A CUSUM over the surprise of bought labels (see the module docstring)."""

    def __init__(self, slack: float = 0.1, threshold: float = 8.0) -> None:
        where = type(self).__name__
        self.slack = check_non_negative("slack", slack, where)
        self.threshold = check_non_negative("threshold", threshold, where)
        self._g = 0.0
        self._n_alarms = 0

    def update(self, proba: Mapping[Hashable, float], label: Hashable) -> bool:
        """Account for one bought label; whether it raises an alarm."""
        if not proba:
            return False  # a model with no answer promised nothing
        predicted = max(proba, key=proba.__getitem__)
        surprise = (predicted != label) - (1.0 - proba[predicted])
        self._g = max(0.0, self._g + surprise - self.slack)
        if self._g > self.threshold:
            self._g = 0.0
            self._n_alarms += 1
            return True
        return False

    @property
    def n_alarms(self) -> int:
        return self._n_alarms

    def __repr__(self) -> str:
        return f"SurpriseDetector(slack={self.slack!r}, threshold={self.threshold!r})"
