"""The engine package: the module moves here unchanged; it is split into parts next."""

from onlearn.engine.engine import Engine, FeedbackItem, FeedbackResult, Prediction

__all__ = ["Engine", "FeedbackItem", "FeedbackResult", "Prediction"]
