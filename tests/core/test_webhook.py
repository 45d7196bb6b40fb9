"""Alarm webhooks against a real HTTP receiver on a loopback port: retries with backoff until
delivered once, Retry-After, no retry of a refusal, a full queue counted, a stop that flushes,
signatures that the documented check verifies, and a caller that never waits."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from pathlib import Path

import pytest

from onlearn.background.webhook import WebhookSender, notify_alarm
from onlearn.config import MonitorConfig, load_settings
from onlearn.errors import ConfigError
from onlearn.webhook_signature import HEADER, sign, verify

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_test"
ALARM = {"model": "m", "kind": "input_drift", "at": 1.0, "detail": "features drifting: x1"}


class Receiver:
    """Answers each POST by the next step of ``script`` (then 200): a status, a status with
    headers, ``"drop"`` (closes the connection, no answer) or ``("hold", event)`` (waits for the
    event, then 200). Keeps (monotonic time, headers, body) of every request."""

    def __init__(self, script=()):
        self.script = list(script)
        self.requests: list[tuple[float, dict, bytes]] = []
        lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    receiver.requests.append((time.monotonic(), dict(self.headers), body))
                    step = receiver.script.pop(0) if receiver.script else 200
                if step == "drop":
                    self.close_connection = True
                    return
                headers = {}
                if isinstance(step, tuple) and step[0] == "hold":
                    step[1].wait(10)
                    step = 200
                elif isinstance(step, tuple):
                    step, headers = step
                self.send_response(step)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alarms"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(request):
    made = []

    def make(*script):
        made.append(Receiver(script))
        return made[-1]

    yield make
    for r in made:
        r.close()


def until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def fast(**options) -> WebhookSender:
    """Small delays, so retries take milliseconds in tests."""
    return WebhookSender(**{"base_delay_s": 0.02, "max_delay_s": 1.0, "seed": 1, **options})


def readme_verify():
    """The verification function README.md shows to a receiver, as written there."""
    section = (ROOT / "README.md").read_text().split("\n## Alarm webhooks\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert f"```python\n{code}```" in operations, "docs/operations.md shows the same check"
    namespace: dict = {}
    exec(code, namespace)
    return namespace["verify_onlearn_signature"]


def test_failures_are_retried_until_delivered_once_and_each_attempt_is_signed(receiver):
    hook = receiver(500, "drop", (503, {"Retry-After": "0"}), 502)
    sender = fast()
    assert sender.send("m", hook.url, ALARM, SECRET)
    until(lambda: sender.stats("m")["delivered"] == 1)
    sender.close()
    assert len(hook.requests) == 5
    ids = {headers["X-Onlearn-Delivery"] for _, headers, _ in hook.requests}
    assert len(ids) == 1, "every attempt of one alarm has its id: a receiver drops repeats"
    assert [h["X-Onlearn-Attempt"] for _, h, _ in hook.requests] == ["1", "2", "3", "4", "5"]
    check = readme_verify()
    for _, headers, body in hook.requests:
        assert json.loads(body) == ALARM
        assert verify(SECRET, headers[HEADER], body)
        assert check(SECRET, headers[HEADER], body)
        assert not check("another secret", headers[HEADER], body)
        assert not check(SECRET, headers[HEADER], body.replace(b"x1", b"x2"))
    assert sender.stats("m") == {
        "queued": 1,
        "delivered": 1,
        "retried": 4,
        "refused": 0,
        "expired": 0,
        "full": 0,
        "stopped": 0,
        "pending": 0,
    }


def test_the_documented_check_refuses_an_old_signature_and_a_bad_header():
    check = readme_verify()
    body = json.dumps(ALARM).encode()
    assert check(SECRET, sign(SECRET, body, int(time.time()) - 10), body)
    replayed = sign(SECRET, body, int(time.time()) - 600)
    assert not check(SECRET, replayed, body) and not verify(SECRET, replayed, body)
    for header in ("", "t=abc,v1=00", "v1=00", f"t={int(time.time())}"):
        assert not check(SECRET, header, body) and not verify(SECRET, header, body)


@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_a_refusal_is_not_retried_and_is_logged(receiver, caplog, status):
    hook = receiver(status)
    sender = fast()
    with caplog.at_level("ERROR", logger="onlearn.background.webhook"):
        sender.send("m", hook.url, ALARM, SECRET)
        until(lambda: sender.stats("m")["refused"] == 1)
        time.sleep(0.2)  # a retry would come within 0.04 s
    sender.close()
    assert len(hook.requests) == 1
    assert sender.stats("m")["delivered"] == 0 and sender.stats("m")["retried"] == 0
    assert any(f"answered {status}, not retried" in r.getMessage() for r in caplog.records)


def test_timeouts_and_too_many_requests_are_retried(receiver):
    hook = receiver(408, 429)
    sender = fast()
    sender.send("m", hook.url, ALARM)
    until(lambda: sender.stats("m")["delivered"] == 1)
    sender.close()
    assert len(hook.requests) == 3
    assert HEADER not in hook.requests[0][1], "no secret, no signature"


def test_retry_after_is_honoured(receiver):
    hook = receiver((503, {"Retry-After": "1"}))
    sender = fast(base_delay_s=0.01)
    sender.send("m", hook.url, ALARM, SECRET)
    until(lambda: sender.stats("m")["delivered"] == 1)
    sender.close()
    (first, *_), (second, *_) = hook.requests
    assert second - first >= 0.95


def test_backoff_grows_and_attempts_run_out_counted(receiver, caplog):
    hook = receiver(*[500] * 10)
    sender = fast(base_delay_s=0.05, max_attempts=5)
    with caplog.at_level("ERROR", logger="onlearn.background.webhook"):
        sender.send("m", hook.url, ALARM, SECRET)
        until(lambda: sender.stats("m")["expired"] == 1)
    sender.close()
    times = [t for t, *_ in hook.requests]
    assert len(times) == 5
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Delays of [0.025, 0.05], [0.05, 0.1], [0.1, 0.2], [0.2, 0.4] s: each at least the last.
    assert all(later >= earlier - 0.02 for earlier, later in zip(gaps, gaps[1:], strict=False))
    assert gaps[-1] >= 0.2 and gaps[-1] > 3 * gaps[0], gaps
    assert sender.stats("m")["retried"] == 4 and sender.stats("m")["delivered"] == 0
    assert any("5 attempts made" in r.getMessage() for r in caplog.records)


def test_an_alarm_older_than_max_age_is_dropped_counted(receiver):
    hook = receiver((503, {"Retry-After": "30"}))
    sender = fast(max_age_s=5)
    sender.send("m", hook.url, ALARM)
    until(lambda: sender.stats("m")["expired"] == 1)
    sender.close()
    assert len(hook.requests) == 1


def test_a_full_queue_drops_the_new_alarm_counted_and_logged(receiver, caplog):
    release = threading.Event()
    hook = receiver(("hold", release))
    sender = fast(max_pending=2)
    with caplog.at_level("ERROR", logger="onlearn.background.webhook"):
        assert sender.send("m", hook.url, {**ALARM, "n": 0})
        until(lambda: len(hook.requests) == 1)  # the thread holds alarm 0, the queue is empty
        accepted = [sender.send("m", hook.url, {**ALARM, "n": n}) for n in range(1, 5)]
    assert accepted == [True, True, False, False]
    assert sender.stats("m")["full"] == 2 and sender.stats("m")["pending"] == 2
    assert sum("dropped (full)" in r.getMessage() for r in caplog.records) == 2
    release.set()
    until(lambda: sender.stats("m")["delivered"] == 3)
    sender.close()
    assert sorted(json.loads(body)["n"] for *_, body in hook.requests) == [0, 1, 2]


def test_the_caller_never_waits_for_a_slow_receiver(receiver):
    release = threading.Event()
    hook = receiver(*[("hold", release)] * 3)
    sender = fast()
    config = MonitorConfig(webhook=hook.url, webhook_secret=SECRET)
    started = time.monotonic()
    for _ in range(20):
        notify_alarm(ALARM, config, sender)  # what the monitor's loop calls
    assert time.monotonic() - started < 0.5, "the alarms were queued, not sent in the call"
    until(lambda: len(hook.requests) == 1)
    release.set()
    until(lambda: sender.stats("m")["delivered"] == 20)
    sender.close()


def test_a_stop_tries_what_is_queued_once_more_then_counts_the_rest(receiver):
    hook = receiver(500)
    sender = fast(base_delay_s=30)  # the retry would come in 15-30 s
    sender.send("m", hook.url, ALARM, SECRET)
    until(lambda: sender.stats("m")["retried"] == 1)
    started = time.monotonic()
    sender.close(deadline_s=2)
    assert time.monotonic() - started < 2
    assert sender.stats("m")["delivered"] == 1 and len(hook.requests) == 2
    assert not sender.send("m", hook.url, ALARM)  # stopped: refused, counted
    assert sender.stats("m")["stopped"] == 1


def test_a_stop_drops_what_the_deadline_leaves_counted_and_logged(receiver, caplog):
    release = threading.Event()
    hook = receiver(("hold", release), 500, 500)
    sender = fast(timeout_s=0.3)
    with caplog.at_level("ERROR", logger="onlearn.background.webhook"):
        for _ in range(3):
            sender.send("m", hook.url, ALARM)
        until(lambda: len(hook.requests) == 1)  # the receiver holds the first
        started = time.monotonic()
        sender.close(deadline_s=0.1)
        took = time.monotonic() - started
    release.set()
    assert took < 1.5, "a stop waits for the deadline and one request's timeout at most"
    assert sender.stats("m")["stopped"] == 3 and sender.stats("m")["pending"] == 0
    assert sum("dropped (stopped)" in r.getMessage() for r in caplog.records) == 3


def test_a_request_still_out_at_the_deadline_is_counted_once_as_stopped(receiver):
    release = threading.Event()
    hook = receiver(("hold", release))
    sender = fast(timeout_s=5)
    sender.send("m", hook.url, ALARM)
    until(lambda: len(hook.requests) == 1)
    started = time.monotonic()
    sender.close(deadline_s=0.2)
    assert time.monotonic() - started < 1.5, "the stop does not wait for the request's timeout"
    release.set()  # the receiver answers 200 after all: its fate was unknown at the stop
    time.sleep(0.2)
    assert sender.stats("m")["stopped"] == 1 and sender.stats("m")["delivered"] == 0


def test_a_stopped_sender_that_never_sent_starts_no_thread():
    sender = WebhookSender()
    sender.close()
    assert sender.stats() == dict.fromkeys(
        ("queued", "delivered", "retried", "refused", "expired", "full", "stopped", "pending"), 0
    )


# Configuration


def config_with(tmp_path, monitor: str) -> Path:
    path = tmp_path / "onlearn.toml"
    path.write_text(
        '[models.m]\ntask = "classification"\npipeline = { name = "logistic_regression" }\n'
        '[models.m.features]\nx = { type = "number" }\n'
        f"[models.m.monitor]\n{monitor}\n"
    )
    return path


def test_plain_http_to_another_machine_needs_a_secret(tmp_path):
    path = config_with(tmp_path, 'webhook = "http://alerts.example.com/hook"')
    with pytest.raises(ConfigError, match="webhook_secret .* ONLEARN_WEBHOOK_SECRET"):
        load_settings(path, environ={})
    settings = load_settings(path, environ={"ONLEARN_WEBHOOK_SECRET": "from-env"})
    assert settings.models[0].monitor.webhook_secret == "from-env"
    assert "from-env" not in repr(settings), "a secret never shows in a repr (nor in logs)"


@pytest.mark.parametrize(
    "monitor",
    [
        'webhook = "http://127.0.0.1:9000/hook"',
        'webhook = "http://localhost:9000/hook"',
        'webhook = "https://alerts.example.com/hook"',
        'webhook = "http://alerts.example.com/hook"\nwebhook_secret = "own"',
    ],
)
def test_loopback_https_or_a_secret_pass(tmp_path, monitor):
    settings = load_settings(config_with(tmp_path, monitor), environ={"ONLEARN_WEBHOOK_SECRET": ""})
    assert settings.models[0].monitor.webhook


def test_the_models_own_secret_wins_over_the_environment(tmp_path):
    path = config_with(tmp_path, 'webhook = "https://a.example/h"\nwebhook_secret = "own"')
    settings = load_settings(path, environ={"ONLEARN_WEBHOOK_SECRET": "env"})
    assert settings.models[0].monitor.webhook_secret == "own"


def test_an_empty_secret_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="webhook_secret must be a non-empty string"):
        load_settings(config_with(tmp_path, 'webhook_secret = ""'), environ={})


@pytest.mark.parametrize(
    "url",
    [
        "https://",
        "http://[::1",
        "https://alerts.example.com:99999/h",
        "https://a b.example/h",
        "ftp://h/x",
    ],
    ids=["no-host", "bad-ipv6", "bad-port", "blank", "ftp"],
)
def test_a_webhook_url_no_request_could_reach_is_refused_at_startup(tmp_path, url):
    # Before: "http://[::1" was a ValueError traceback, "https://" was accepted.
    with pytest.raises(ConfigError, match="webhook must be an http\\(s\\) URL with a host"):
        load_settings(config_with(tmp_path, f'webhook = "{url}"'), environ={})


@pytest.mark.parametrize(
    "header",
    ["t=" + "9" * 400 + ",v1=00", "t={now},v1=\u00e9", "t=\uff11\uff12,v1=00", "v1=00", "t=,v1="],
    ids=["huge-time", "non-ascii-digest", "wide-digits", "no-time", "empty"],
)
def test_a_forged_signature_header_is_false_not_an_exception(header):
    # Both raised before: OverflowError (int to float), TypeError (compare_digest on non-ASCII).
    header = header.replace("{now}", str(int(time.time())))
    assert verify(SECRET, header, b"{}") is False
    assert readme_verify()(SECRET, header, b"{}") is False


def test_unfinished_deliveries_resume_with_their_id_and_age(receiver):
    """What a sender still holds (queued or retrying) is listed with its id, age and alarm; a
    new sender given them delivers each with the same id, and one past max_age is counted
    expired without a request."""
    down = receiver(*[503] * 50)
    first = fast(base_delay_s=0.5, max_delay_s=0.5)
    first.send("m", down.url, ALARM, SECRET)
    first.send("m", down.url, {**ALARM, "kind": "concept_drift"}, SECRET, delivery_id="d-2")
    first.send("other", down.url, ALARM, SECRET)
    until(lambda: len(down.requests) >= 3)
    held = first.unfinished("m")
    assert [h["alarm"]["kind"] for h in held] == ["input_drift", "concept_drift"]
    assert held[1]["id"] == "d-2" and all(h["age_s"] >= 0 for h in held)
    sent_ids = {r[1]["X-Onlearn-Delivery"] for r in down.requests}
    assert {h["id"] for h in held} <= sent_ids
    first.close(0)  # the process dies: nothing more from this sender

    up = receiver()
    second = fast(max_age_s=60)
    for h in held:
        assert second.send("m", up.url, h["alarm"], SECRET, delivery_id=h["id"], age_s=h["age_s"])
    assert not second.send("m", up.url, ALARM, SECRET, delivery_id="old", age_s=61)
    until(lambda: second.stats("m")["delivered"] == 2)
    assert [r[1]["X-Onlearn-Delivery"] for r in up.requests] == [h["id"] for h in held]
    assert [json.loads(r[2])["kind"] for r in up.requests] == ["input_drift", "concept_drift"]
    assert second.stats("m")["expired"] == 1 and second.unfinished("m") == []
    second.close()
