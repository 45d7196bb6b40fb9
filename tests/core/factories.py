"""Models for tests, built through the config's trusted ``factory`` entry."""

from __future__ import annotations

from river import base, linear_model, preprocessing


class Turncoat(base.Classifier):
    """A good binary classifier (scaled logistic regression) until it has learned ``flip_after``
    labels; from then on it answers the opposite of what it believes: a regression on demand."""

    def __init__(self, flip_after: int = 1000) -> None:
        self.flip_after = flip_after
        self._model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
        self._seen = 0

    def learn_one(self, x, y):
        self._model.learn_one(x, y)
        self._seen += 1

    def predict_proba_one(self, x):
        if not self._seen:
            return {}
        proba = self._model.predict_proba_one(x)
        if self._seen >= self.flip_after:
            return {label: 1.0 - p for label, p in proba.items()}
        return proba


def turncoat(flip_after: int = 1000) -> Turncoat:
    return Turncoat(flip_after)
