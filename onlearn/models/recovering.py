"""A classifier that replaces itself when its errors surprise it and a fresh copy does better.

A Hoeffding tree never forgets: after a concept change it keeps its old splits and grows new
ones only as fast as labels come. Given every label it grows out of the old concept; given a
tenth (an ``active`` table at a 10 % budget) it stays on it (benchmarks/RESULTS.md, "Active
learning": the tree under a budget kept 33 % accuracy on the new STAGGER concept). This wrapper
watches the labels it learns with the sampler's ``SurpriseDetector`` (more errors than the
model's confidence promised: a CUSUM that works on the uncertain labels a strategy buys as on
every label), starts a fresh copy of the model on an alarm, trains both on every label after
it, and hands over to the copy when a sign test on the labels both answered says it is better:
of the labels where exactly one of them was right, the copy was right on ``b`` and the model
on ``f``, and ``(b - f) / sqrt(b + f) >= z`` with ``b + f >= min_disagreements``. The copy is
dropped when the same test says the model is better (a false alarm).

Everything it decides comes from the labels in the order learned, so a replay of the log
rebuilds it exactly (design section 3), and it pickles with both models in a snapshot.

>>> from river import tree
>>> model = RecoveringClassifier(tree.HoeffdingTreeClassifier())
>>> for i in range(300):  # concept "x > 0.5", then its opposite
...     x = {"x": (i * 37 % 100) / 100}
...     model.learn_one(x, (x["x"] > 0.5) != (i >= 150))
>>> model.n_handovers, model.predict_one({"x": 0.9})
(1, False)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator
from typing import Any

from river import base

from onlearn.active._check import check_count
from onlearn.active.steering import SurpriseDetector
from onlearn.errors import ConfigError

__all__ = ["RecoveringClassifier"]


class RecoveringClassifier(base.Wrapper, base.Classifier):
    """``model``, replaced by a fresh copy trained since a surprise alarm once the copy is
    better (module docstring)."""

    def __init__(
        self,
        model: base.Classifier,
        slack: float = 0.1,
        threshold: float = 8.0,
        z: float = 2.0,
        min_disagreements: int = 4,
    ) -> None:
        where = type(self).__name__
        if not (isinstance(z, int | float) and not isinstance(z, bool) and 0 < z < math.inf):
            raise ConfigError(f"{where}: 'z' must be a finite number > 0, got {z!r}")
        self.model = model
        self.slack = slack
        self.threshold = threshold
        self.z = z
        self.min_disagreements = check_count("min_disagreements", min_disagreements, where)
        self.background: base.Classifier | None = None
        self._detector = SurpriseDetector(slack=slack, threshold=threshold)
        self._model_right = self._background_right = 0
        self.n_handovers = 0

    @property
    def _wrapped_model(self) -> base.Classifier:
        return self.model

    @property
    def _multiclass(self) -> bool:
        return self.model._multiclass

    def models(self) -> Iterator[base.Classifier]:
        """The model and, while one trains, its background copy."""
        yield self.model
        if self.background is not None:
            yield self.background

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Hashable, float]:
        return self.model.predict_proba_one(x, **kwargs)

    def learn_one(self, x: dict, y: Hashable, **kwargs: Any) -> None:
        proba = self.model.predict_proba_one(x)
        if self.background is not None:
            self._compare(proba, self.background.predict_proba_one(x), y)
        elif self._detector.update(proba, y):
            self.background = self.model.clone()
            self._model_right = self._background_right = 0
        self.model.learn_one(x, y, **kwargs)
        if self.background is not None:
            self.background.learn_one(x, y, **kwargs)

    def _compare(self, proba: dict, background_proba: dict, y: Hashable) -> None:
        """Count one label both answered; hand over or drop the copy when the test decides."""
        model_right, background_right = _right(proba, y), _right(background_proba, y)
        if model_right == background_right:
            return
        self._model_right += model_right
        self._background_right += background_right
        n = self._model_right + self._background_right
        if n < self.min_disagreements:
            return
        score = (self._background_right - self._model_right) / math.sqrt(n)
        if score >= self.z:
            self.model, self.background = self.background, None
            self.n_handovers += 1
        elif score <= -self.z:
            self.background = None


def _right(proba: dict, y: Hashable) -> bool:
    return bool(proba) and max(proba, key=proba.__getitem__) == y
