"""The model lock: mutual exclusion, and the learner's hand-off to waiting predicts.

No timing is asserted: each test waits for a state of the lock (a thread registered as waiting,
the learner asked) before the next step, and checks the order in which the lock was held.
"""

from __future__ import annotations

import threading
import time

from onlearn.config import Settings
from onlearn.engine import Engine, FeedbackItem
from onlearn.handoff_lock import HandoffLock
from onlearn.learner import LearnerState
from tests.core.conftest import phishing_settings, phishing_stream

STEP_TIMEOUT_S = 30.0  # a hung test fails instead of hanging; never a measure of speed


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.001)


def _start(target, *args, name: str | None = None) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True, name=name)
    thread.start()
    return thread


def _join(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(STEP_TIMEOUT_S)
        assert not thread.is_alive()


def test_mutual_exclusion_between_readers_and_the_learner():
    lock = HandoffLock()
    inside = []
    overlaps = []

    def hold(n: int, learner: bool) -> None:
        for _ in range(n):
            with lock.after_waiters() if learner else lock:
                inside.append(1)
                if len(inside) != 1:
                    overlaps.append(len(inside))
                time.sleep(0)  # let the others run while it is held
                inside.pop()

    threads = [_start(hold, 300, False) for _ in range(4)] + [_start(hold, 300, True)]
    _join(*threads)
    assert overlaps == []
    assert not lock.locked()


def test_waiting_readers_go_before_the_learner_and_later_ones_after():
    """A waits when the learner asks, B comes after: the lock goes to A, the learner, then B."""
    lock = HandoffLock()
    order: list[str] = []

    def reader(name: str) -> None:
        with lock:
            order.append(name)

    def learner() -> None:
        with lock.after_waiters():
            order.append("learn")

    lock.acquire()  # the learner's previous event, say
    a = _start(reader, "A")
    _until(lambda: len(lock._waiting) == 1, "A waits")
    learn = _start(learner)
    _until(lambda: lock._gate is not None, "the learner asks")
    b = _start(reader, "B")
    _until(lambda: len(lock._waiting) == 2, "B waits")
    lock.release()
    _join(a, learn, b)
    assert order == ["A", "learn", "B"]


def test_learner_with_nobody_waiting_takes_the_lock_at_once():
    lock = HandoffLock()
    for _ in range(3):
        with lock.after_waiters():
            assert lock.locked()
    assert lock._gate is None and not lock._waiting


def test_learner_is_not_starved_by_readers_that_keep_coming():
    lock = HandoffLock()
    done = threading.Event()
    learned = []
    reads = [0]

    def reader() -> None:
        while not done.is_set():
            with lock:
                reads[0] += 1

    def learner() -> None:
        for i in range(500):
            with lock.after_waiters():
                learned.append(i)
        done.set()

    readers = [_start(reader) for _ in range(4)]
    learn = _start(learner)
    _join(learn, *readers)
    assert learned == list(range(500))
    assert reads[0] > 0


def _gated_engine(monkeypatch, settings: Settings, stop_at: int):
    """An engine whose learner records each learn and predict in ``order`` and stops inside the
    learn of label number ``stop_at`` (counted from 1) until ``proceed`` is set."""
    order: list[tuple[str, object]] = []
    learning, proceed = threading.Event(), threading.Event()
    learn, predict = LearnerState.learn, LearnerState.predict

    def gated_learn(self, event, x):
        learn(self, event, x)
        order.append(("learn", event.seq))
        if sum(kind == "learn" for kind, _ in order) == stop_at:
            learning.set()
            proceed.wait(STEP_TIMEOUT_S)

    def recorded_predict(self, x):
        # learn predicts too (prequential metrics): the askers' predicts are told by thread.
        order.append(("predict", threading.current_thread().name))
        return predict(self, x)

    monkeypatch.setattr(LearnerState, "learn", gated_learn)
    monkeypatch.setattr(LearnerState, "predict", recorded_predict)
    return Engine.from_settings(settings), order, learning, proceed


def test_a_predict_waits_for_at_most_one_event_of_a_batch(monkeypatch):
    """A batch of 200 labels learned through the engine; a predict arrives while label 50 is
    being learned: it gets the model lock before label 51."""
    rows = list(phishing_stream(200))
    engine, order, learning, proceed = _gated_engine(
        monkeypatch, phishing_settings("memory://"), stop_at=50
    )
    with engine:
        rt = engine.runtime("phishing")
        items = [FeedbackItem(label=y, features=x) for x, y in rows]
        feed = _start(engine.feedback_many, "phishing", items)
        assert learning.wait(STEP_TIMEOUT_S)
        ask = _start(engine.predict_one, "phishing", rows[0][0], name="asker")
        _until(lambda: len(rt.lock._waiting) == 1, "the predict waits for the model lock")
        proceed.set()
        _join(feed, ask)
        assert rt.labels_applied == 200
    order = [entry for entry in order if entry[0] == "learn" or entry[1] == "asker"]
    learns = [seq for kind, seq in order if kind == "learn"]
    at = order.index(("predict", "asker"))
    assert order[at - 1] == ("learn", learns[49])
    assert order[at + 1] == ("learn", learns[50])


def test_predicts_that_keep_coming_do_not_starve_a_batch(monkeypatch):
    """Four threads predict without pause while a batch of 300 labels is learned: every label
    is learned, and the predicts got the lock in between (not only before or after the batch)."""
    rows = list(phishing_stream(300))
    engine, order, learning, proceed = _gated_engine(
        monkeypatch, phishing_settings("memory://"), stop_at=1
    )
    proceed.set()  # no stop: the gate only marks the start of learning
    done = threading.Event()

    def keep_predicting() -> None:
        while not done.is_set():
            engine.predict_one("phishing", rows[0][0])

    with engine:
        askers = [_start(keep_predicting, name="asker") for _ in range(4)]
        _until(lambda: len(order) > 20, "the predicts run")
        engine.feedback_many("phishing", [FeedbackItem(label=y, features=x) for x, y in rows])
        done.set()
        _join(*askers)
        assert engine.runtime("phishing").labels_applied == 300
    kinds = [kind for kind, who in order if kind == "learn" or who == "asker"]
    first, last = kinds.index("learn"), len(kinds) - 1 - kinds[::-1].index("learn")
    between = kinds[first:last]
    assert between.count("learn") == 299
    assert "predict" in between
