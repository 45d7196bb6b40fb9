"""A binary classifier over two declared labels, for river's boolean binary classifiers."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from river import base, linear_model


class BinaryClassifier(base.Wrapper, base.Classifier):
    """Puts a boolean binary classifier behind two arbitrary labels.

    river's ``LogisticRegression`` learns ``y`` in ``{True, False}`` and answers
    ``{False: p0, True: p1}``. Wrapped in this, it learns ``classes[0]`` as ``True`` and
    ``classes[1]`` as ``False``, and answers ``{classes[0]: p1, classes[1]: p0}``: the user's labels,
    always both, in the order of ``classes``. Half the cost of a one-vs-rest classifier, which
    trains and queries one model per class.

    A label is one of the classes when it has the same type and an equal value, the rule the engine
    validates labels by (so ``1`` is not ``True``); any other label raises ``ValueError``.

    Until it has learnt a label it answers ``{}``, as one-vs-rest does (and as the engine expects
    of a fresh model: no label, no probabilities), not the 0.5 of an untrained logistic regression.

    ``learn_one`` takes no sample weight: the catalog's pipelines learn without one, and passing
    ``**kwargs`` through costs a quarter of a microsecond per event.

    Parameters
    ----------
    classifier
        A binary classifier that learns booleans and answers ``{False: p0, True: p1}``.
    classes
        The two labels: the first is learnt as ``True``, the second as ``False``.

    Examples
    --------

    >>> from river import linear_model
    >>> model = BinaryClassifier(linear_model.LogisticRegression(), classes=("spam", "ham"))
    >>> model.predict_proba_one({"x": 1.0})
    {}
    >>> model.learn_one({"x": 1.0}, "spam")
    >>> {label: round(p, 4) for label, p in model.predict_proba_one({"x": 1.0}).items()}
    {'spam': 0.5025, 'ham': 0.4975}
    >>> model.learn_one({"x": 1.0}, "eggs")
    Traceback (most recent call last):
    ...
    ValueError: label 'eggs' is not one of the model's classes, 'spam' and 'ham'

    """

    def __init__(self, classifier: base.Classifier, classes: Sequence[Hashable]):
        self.classifier = classifier
        self.classes = tuple(classes)
        if len(self.classes) != 2:
            raise ValueError(f"a binary classifier needs two classes, got {self.classes!r}")
        first, second = self.classes
        hash(first), hash(second)  # they key the probabilities: a TypeError now, not later
        if first == second:
            raise ValueError(
                f"the classes {first!r} and {second!r} are equal as keys of a dict; a binary "
                "classifier needs two distinct classes"
            )
        self._first, self._second = first, second
        self._first_type, self._second_type = type(first), type(second)
        self._learnt = False
        # river's LogisticRegression answers {False: 1.0 - p, True: p} with p = sigmoid(w.x + b):
        # computing p here skips building and reading that dict (this is on the hot path).
        self._logistic = type(classifier) is linear_model.LogisticRegression

    @property
    def _wrapped_model(self):
        return self.classifier

    @classmethod
    def _unit_test_params(cls):
        yield {"classifier": linear_model.LogisticRegression(), "classes": (True, False)}

    def learn_one(self, x: dict, y: base.typing.ClfTarget, **kwargs: Any) -> None:
        # kwargs: a sample weight ``w`` (onlearn/weights.py) goes to the wrapped classifier.
        if type(y) is self._first_type and y == self._first:
            self.classifier.learn_one(x, True, **kwargs)
        elif type(y) is self._second_type and y == self._second:
            self.classifier.learn_one(x, False, **kwargs)
        else:
            raise ValueError(
                f"label {y!r} is not one of the model's classes, {self._first!r} and "
                f"{self._second!r}"
            )
        self._learnt = True

    def predict_proba_one(self, x: dict) -> dict[base.typing.ClfTarget, float]:
        if not self._learnt:
            return {}
        classifier = self.classifier
        if self._logistic:
            p = classifier.loss.mean_func(classifier._raw_dot_one(x))
            return {self._first: p, self._second: 1.0 - p}
        proba = classifier.predict_proba_one(x)
        return {self._first: proba[True], self._second: proba[False]}
