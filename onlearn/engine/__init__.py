"""The engine: predict, take feedback, and follow the log. No web framework here.

Predict reads the champion under the model's lock and hands the record to a background
writer. Feedback joins the label with the stored prediction, appends the label event durably
(the only thing a feedback call waits for besides its own apply), and the model's learner applies
events in seq order. A follower thread per model also picks up events other processes appended.

The parts, one concept each: ``engine`` (life cycle, wiring, queries), ``predict``,
``feedback``, ``follower`` (following the log, catching up), ``roles`` (promote, roll back) and
``maintenance`` (periodic chores, the snapshot at shutdown). The Engine holds one of each and
hands them its calls (composition: each part receives only the stores and settings it uses).
"""

from onlearn.engine.engine import Engine
from onlearn.engine.feedback import FeedbackResult
from onlearn.engine.predict import Prediction
from onlearn.records import FeedbackItem

__all__ = ["Engine", "FeedbackItem", "FeedbackResult", "Prediction"]
