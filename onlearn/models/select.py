"""Feature selection that tolerates absent features and fixes their order."""

from __future__ import annotations

from river import base


class SelectPresent(base.Transformer):
    """Keeps the listed features that are present in ``x``, in the listed order.

    river's ``compose.Select`` raises ``KeyError`` when a selected feature is missing, and a
    nullable feature with no value is missing from the feature dict. This selector skips it
    instead (a ``None`` value counts as missing too).

    The output order is the order of ``keys``, whatever the order of ``x``: the models downstream
    sum floats in that order, so a fixed order is what makes two replicas, or a replica and a
    replay, give bit-identical predictions. ``compose.Select`` keeps its keys in a ``set``, whose
    order changes with ``PYTHONHASHSEED`` from one process to the next.

    Parameters
    ----------
    keys
        Names of the features to keep. Duplicates are ignored.

    Examples
    --------

    >>> select = SelectPresent("b", "a", "missing")
    >>> select.transform_one({"a": 1, "b": 2, "c": 3})
    {'b': 2, 'a': 1}
    >>> select.transform_one({"a": None, "c": 3})
    {}

    """

    def __init__(self, *keys: base.typing.FeatureName):
        self.keys = tuple(dict.fromkeys(keys))

    def transform_one(self, x: dict) -> dict:
        return {k: v for k in self.keys if (v := x.get(k)) is not None}

    def __str__(self) -> str:
        return str(list(self.keys))

    def __repr__(self) -> str:
        if self.keys:
            return "SelectPresent (\n  " + "\n  ".join(map(str, self.keys)) + "\n)"
        return "SelectPresent ()"


class SubsetRegressor(base.Regressor):
    """A regressor that learns from, and predicts with, only the listed features.

    Regression trees hand the whole feature dict to the linear model in their leaves, which
    fails on categorical (string) values; wrapped in this, the leaf model sees the numeric
    features only while the tree still splits on the categorical ones. Sample weights pass
    through, as the trees of a forest learn with Poisson weights.

    Parameters
    ----------
    regressor
        The regressor to wrap.
    keys
        Names of the features it sees.

    Examples
    --------

    >>> from river import linear_model
    >>> model = SubsetRegressor(linear_model.LinearRegression(), keys=("x",))
    >>> model.learn_one({"x": 1.0, "colour": "red"}, 2.0)
    >>> round(model.predict_one({"x": 1.0, "colour": "blue"}), 4)
    0.08

    """

    def __init__(self, regressor: base.Regressor, keys: tuple[base.typing.FeatureName, ...] = ()):
        self.regressor = regressor
        self.keys = tuple(dict.fromkeys(keys))

    @classmethod
    def _unit_test_params(cls):
        from river import linear_model

        yield {"regressor": linear_model.LinearRegression(), "keys": ()}

    def _select(self, x: dict) -> dict:
        return {k: v for k in self.keys if (v := x.get(k)) is not None}

    def learn_one(self, x: dict, y: base.typing.RegTarget, w: float = 1.0) -> None:
        self.regressor.learn_one(self._select(x), y, w)

    def predict_one(self, x: dict) -> base.typing.RegTarget:
        return self.regressor.predict_one(self._select(x))
