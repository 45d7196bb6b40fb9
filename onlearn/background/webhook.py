"""Alarm webhooks: a bounded delivery queue with one sending thread, retries with backoff, and
signed bodies.

``send`` never blocks its caller (the monitor's loop, the worker's): it queues the alarm and
returns. The thread posts each alarm's JSON body; a 2xx is delivered. A 408, a 429, a 5xx, a
connection error or a timeout is tried again after an exponential backoff with jitter (or the
receiver's ``Retry-After``, when longer), up to ``max_attempts`` attempts and ``max_age_s``
seconds after the alarm. Any other answer (a 4xx: the URL or the body is wrong, and asking again
changes nothing) is not retried. Nothing is lost silently: a full queue, a refusal, attempts or
time run out, or a stop with alarms still queued are each counted (``stats``) and logged.

Each attempt carries ``X-Onlearn-Delivery`` (the same id for every attempt of one alarm: a
receiver drops duplicates by it) and, when the model has a secret, ``X-Onlearn-Signature``
(``onlearn.webhook_signature``), signed at the attempt's time.

The queue is in memory; ``unfinished`` lists what it still holds, so that its owner can keep
that list where a restart finds it and ``send`` it again with the same delivery id and age (the
monitor keeps it in its report document: an alarm survives a kill -9 of its process).
"""

from __future__ import annotations

import collections
import email.utils
import hashlib
import heapq
import itertools
import json
import logging
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from onlearn.config import MonitorConfig
from onlearn.webhook_signature import HEADER, sign

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 429})
# The outcomes counted per model; every alarm ends in exactly one of the first five.
OUTCOMES = ("delivered", "refused", "expired", "full", "stopped")


@dataclass
class _Delivery:
    id: str
    model: str
    url: str
    body: bytes
    secret: str | None = field(repr=False)
    queued_at: float
    attempts: int = 0
    abandoned: bool = False  # counted as stopped while its request was still out
    alarm: dict = field(default_factory=dict, repr=False)  # as sent, for ``unfinished``


class WebhookSender:
    """One thread delivering alarms to their models' webhooks; started at the first alarm."""

    def __init__(
        self,
        *,
        max_pending: int = 1000,
        max_attempts: int = 10,
        max_age_s: float = 3600.0,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        timeout_s: float = 5.0,
        seed: int | None = None,
    ) -> None:
        self.max_pending = max_pending
        self.max_attempts = max_attempts
        self.max_age_s = max_age_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self._random = random.Random(seed)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Delivery]] = []  # (due, order, delivery)
        self._order = itertools.count()
        self._counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._flush_until = 0.0
        self._in_flight: _Delivery | None = None

    # The caller's side: never waits for the network.

    def send(
        self,
        model: str,
        url: str,
        alarm: dict,
        secret: str | None = None,
        *,
        delivery_id: str | None = None,
        age_s: float = 0.0,
    ) -> bool:
        """Queue ``alarm`` for ``url``; False (counted and logged) when it cannot be queued.

        ``delivery_id`` (default: a new one) and ``age_s`` (how long ago the alarm was first
        queued, which ``max_age_s`` counts from) resume a delivery a stopped sender left
        ``unfinished``."""
        body = json.dumps(alarm, separators=(",", ":"), default=str).encode()
        delivery = _Delivery(
            delivery_id or uuid.uuid4().hex,
            model,
            url,
            body,
            secret,
            time.monotonic() - max(0.0, age_s),
            alarm=alarm,
        )
        with self._cond:
            if self._closing:
                return self._drop(delivery, "stopped", "the sender is stopping")
            if age_s > self.max_age_s:
                return self._drop(delivery, "expired", f"older than {self.max_age_s} s")
            if len(self._heap) >= self.max_pending:
                return self._drop(delivery, "full", f"{self.max_pending} alarms already queued")
            heapq.heappush(self._heap, (delivery.queued_at, next(self._order), delivery))
            self._counts[model]["queued"] += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="onlearn-webhook", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return True

    def stats(self, model: str | None = None) -> dict[str, int]:
        """Counts of ``queued``, ``delivered``, ``retried`` (attempts after a failure), the drops
        (``refused``, ``expired``, ``full``, ``stopped``) and ``pending`` now; of one model, or
        of all."""
        with self._cond:
            counts = (
                self._counts.get(model, collections.Counter())
                if model is not None
                else sum(self._counts.values(), collections.Counter())
            )
            pending = sum(1 for *_, d in self._heap if model is None or d.model == model)
        keys = ("queued", "delivered", "retried", *OUTCOMES[1:])
        return {**{k: counts.get(k, 0) for k in keys}, "pending": pending}

    def unfinished(self, model: str) -> list[dict[str, Any]]:
        """The deliveries of ``model`` still queued or in flight, oldest first: ``id``,
        ``age_s`` and the ``alarm`` (JSON-safe), what ``send`` takes to resume them."""
        now = time.monotonic()
        with self._cond:
            held = [d for *_, d in self._heap if d.model == model]
            if self._in_flight is not None and self._in_flight.model == model:
                held.append(self._in_flight)
        held.sort(key=lambda d: d.queued_at)
        return [{"id": d.id, "age_s": now - d.queued_at, "alarm": d.alarm} for d in held]

    def close(self, deadline_s: float = 2.0) -> None:
        """Stop taking alarms; try each queued one once more (backoff or not) for at most
        ``deadline_s``, the time its requests get too; what is left is dropped, counted and
        logged. Returns within about ``deadline_s`` (a process stopping has a few seconds)."""
        with self._cond:
            self._closing = True
            self._flush_until = time.monotonic() + deadline_s
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(deadline_s + 0.5)
        with self._cond:
            why = f"not delivered within the {deadline_s} s stop"
            while self._heap:
                self._drop(heapq.heappop(self._heap)[2], "stopped", why)
            if self._in_flight is not None:  # its request outlived the stop: fate unknown
                self._in_flight.abandoned = True
                self._drop(self._in_flight, "stopped", why + " (its request was still out)")

    # The thread's side.

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            while True:
                with self._cond:
                    delivery = self._in_flight = self._next()
                    if delivery is None:
                        return
                    timeout = self.timeout_s
                    if self._closing:  # the stop's deadline bounds the request too
                        timeout = max(0.05, min(timeout, self._flush_until - time.monotonic()))
                self._attempt(client, delivery, timeout)
                with self._cond:
                    self._in_flight = None

    def _next(self) -> _Delivery | None:
        """The next delivery due (waiting for it under the lock), or None when stopped."""
        while True:
            now = time.monotonic()
            if self._closing:
                if not self._heap or now >= self._flush_until:
                    return None
                # Stopping: each queued alarm gets one more try now, whatever its backoff (a
                # failure then drops it: see _again).
                return heapq.heappop(self._heap)[2]
            if self._heap and self._heap[0][0] <= now:
                return heapq.heappop(self._heap)[2]
            self._cond.wait(self._heap[0][0] - now if self._heap else None)

    def _attempt(self, client, delivery: _Delivery, timeout: float) -> None:
        import httpx

        delivery.attempts += 1
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "onlearn-webhook",
            "X-Onlearn-Delivery": delivery.id,
            "X-Onlearn-Attempt": str(delivery.attempts),
        }
        if delivery.secret:
            headers[HEADER] = sign(delivery.secret, delivery.body, int(time.time()))
        retry_after = 0.0
        try:
            response = client.post(
                delivery.url, content=delivery.body, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as e:  # connection refused or dropped, timeout
            failure = f"{type(e).__name__}: {e}"
        except Exception as e:  # a URL httpx cannot use, say: trying again changes nothing
            with self._cond:
                if not delivery.abandoned:
                    self._drop(delivery, "refused", f"{type(e).__name__}: {e}")
            return
        else:
            status = response.status_code
            if 200 <= status < 300:
                with self._cond:
                    if not delivery.abandoned:
                        self._counts[delivery.model]["delivered"] += 1
                return
            if status not in RETRIED_STATUSES and status < 500:
                with self._cond:
                    if not delivery.abandoned:
                        self._drop(delivery, "refused", f"answered {status}, not retried")
                return
            failure = f"answered {status}"
            retry_after = _retry_after(response.headers.get("retry-after"))
        self._again(delivery, failure, retry_after)

    def _again(self, delivery: _Delivery, failure: str, retry_after: float) -> None:
        # Equal jitter: half the exponential delay, plus up to as much again at random; so each
        # delay is at least the previous one's most, and retries of many alarms spread out.
        step = min(self.max_delay_s, self.base_delay_s * 2 ** (delivery.attempts - 1))
        delay = max(step / 2 + self._random.uniform(0, step / 2), retry_after)
        due = time.monotonic() + delay
        with self._cond:
            if delivery.abandoned:
                return
            if self._closing:
                self._drop(delivery, "stopped", f"{failure}; the sender is stopping")
            elif delivery.attempts >= self.max_attempts:
                self._drop(delivery, "expired", f"{failure}; {delivery.attempts} attempts made")
            elif due - delivery.queued_at > self.max_age_s:
                self._drop(delivery, "expired", f"{failure}; next try past {self.max_age_s} s")
            else:
                self._counts[delivery.model]["retried"] += 1
                log.info(
                    "webhook %s (model %s): %s; attempt %d in %.1f s",
                    _where(delivery.url),
                    delivery.model,
                    failure,
                    delivery.attempts + 1,
                    delay,
                )
                heapq.heappush(self._heap, (due, next(self._order), delivery))

    def _drop(self, delivery: _Delivery, outcome: str, why: str) -> bool:
        """Count and log an alarm that will not be delivered (called under the lock)."""
        self._counts[delivery.model][outcome] += 1
        log.error(
            "webhook %s (model %s): alarm %s dropped (%s): %s",
            _where(delivery.url),
            delivery.model,
            delivery.id,
            outcome,
            why,
        )
        return False


def _retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date); 0 when absent or bad."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


def _where(url: str) -> str:
    """The receiver as logged: scheme and host only (a webhook URL's path or query often holds
    a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def notify_alarm(
    alarm: dict, config: MonitorConfig, sender: WebhookSender | None, **resume: Any
) -> None:
    """A log line for every alarm, and the model's webhook (queued: returns at once);
    ``resume``: ``send``'s ``delivery_id`` and ``age_s``."""
    log.warning("ALARM model=%s kind=%s %s", alarm["model"], alarm["kind"], alarm.get("detail", ""))
    if config.webhook and sender is not None:
        sender.send(alarm["model"], config.webhook, alarm, config.webhook_secret, **resume)


DELIVERY_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def stable_delivery_id(alarm: dict) -> str:
    """The delivery id of an alarm, the same in every process that sends it (a receiver drops
    duplicates by it): from the model, the alarm's log seq and its time (the monitor's alarms,
    appended to the log), or, for an alarm kept out of the log (the worker's importance
    alarms), from the model, its kind, version and time."""
    if alarm.get("alarm_seq") is not None:
        seed = f"{alarm.get('model')}:{alarm.get('alarm_seq')}:{alarm.get('at')}"
    else:
        seed = f"{alarm.get('model')}:{alarm.get('kind')}:{alarm.get('version')}:{alarm.get('at')}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def resend(
    sender: WebhookSender,
    name: str,
    config: MonitorConfig,
    alarm: dict,
    now: float,
    *,
    delivery_id: str | None = None,
) -> None:
    """Queue again an alarm a stopped process had not delivered, with the age it has
    (``max_age_s`` still counts from the alarm's ``at``) and ``delivery_id``, the id it was
    sent with (default: its stable one)."""
    if not config.webhook:
        return
    age = now - alarm["at"] if isinstance(alarm.get("at"), int | float) else 0.0
    sender.send(
        name,
        config.webhook,
        alarm,
        config.webhook_secret,
        delivery_id=delivery_id or stable_delivery_id(alarm),
        age_s=age,
    )


def resend_outbox(
    sender: WebhookSender, name: str, config: MonitorConfig, outbox: Any, now: float
) -> int:
    """Send again an ``unfinished`` list a stopped sender's owner kept in the store (a kill -9
    included); returns how many. From the store, so untrusted: entries that are not an alarm
    are skipped, and an id that is not one a sender makes (a header's worth of letters and
    digits) is replaced by the alarm's stable one."""
    count = 0
    for entry in outbox if isinstance(outbox, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("alarm"), dict):
            sent_as = entry.get("id")
            if not (isinstance(sent_as, str) and DELIVERY_ID.fullmatch(sent_as)):
                sent_as = None
            resend(sender, name, config, entry["alarm"], now, delivery_id=sent_as)
            count += 1
    return count


__all__ = [
    "DELIVERY_ID",
    "WebhookSender",
    "notify_alarm",
    "resend",
    "resend_outbox",
    "stable_delivery_id",
]
