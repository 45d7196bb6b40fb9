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


class RegressionTurncoat(base.Regressor):
    """A good regressor (scaled linear regression) until it has learned ``flip_after`` labels;
    from then on it answers ``offset`` away from what it believes."""

    def __init__(self, flip_after: int = 1000, offset: float = 25.0) -> None:
        self.flip_after = flip_after
        self.offset = offset
        self._model = preprocessing.StandardScaler() | linear_model.LinearRegression()
        self._seen = 0

    def learn_one(self, x, y):
        self._model.learn_one(x, y)
        self._seen += 1

    def predict_one(self, x):
        y = self._model.predict_one(x)
        return y + self.offset if self._seen >= self.flip_after else y


def regression_turncoat(flip_after: int = 1000, offset: float = 25.0) -> RegressionTurncoat:
    return RegressionTurncoat(flip_after, offset)


def mean_regressor():
    """Answers the mean of the labels so far, whatever the features: a poor regressor."""
    from river import dummy, stats

    return dummy.StatisticRegressor(stats.Mean())


class Picky(base.Classifier):
    """Logistic regression that cannot learn a label equal to ``refuse`` (its learn_one raises):
    a model that skips some labels, as a real one may on a value it cannot handle."""

    def __init__(self, refuse: object = False) -> None:
        self.refuse = refuse
        self._model = linear_model.LogisticRegression()

    def learn_one(self, x, y):
        if y == self.refuse:
            raise ValueError(f"cannot learn label {y!r}")
        self._model.learn_one(x, y)

    def predict_proba_one(self, x):
        return self._model.predict_proba_one(x)


def picky(refuse: object = False) -> Picky:
    return Picky(refuse)


class Approver(base.Classifier):
    """Answers True ("approve": the label will be observed) when ``x > threshold``, with
    certainty, and learns nothing: a fixed policy, for A/B tests whose labels follow it."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def learn_one(self, x, y):
        pass

    def predict_proba_one(self, x):
        yes = x["x"] > self.threshold
        return {True: float(yes), False: float(not yes)}


def approver(threshold: float = 0.5) -> Approver:
    return Approver(threshold)
