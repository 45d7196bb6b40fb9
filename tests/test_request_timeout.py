"""RequestTimeout at the ASGI level: the watchdog cancels what runs past its deadline, answers
504 (408 while the body is still arriving), and leaves alone what answered, what finished, and
cancellations that are not its own."""

from __future__ import annotations

import asyncio
import json

import pytest

from serving.limits import RequestTimeout

TIMEOUT = 0.2


def scope() -> dict:
    return {"type": "http", "method": "POST", "path": "/x", "headers": []}


async def call(app, body_parts=(b"{}",), *, gap: float = 0.0):
    sent: list[dict] = []
    parts = list(body_parts)

    async def receive():
        if gap:
            await asyncio.sleep(gap)
        if not parts:
            await asyncio.sleep(3600)  # a client that never sends the rest
        part = parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    async def send(message):
        sent.append(message)

    await app(scope(), receive, send)
    return sent


def status(sent) -> int:
    return sent[0]["status"]


def detail(sent) -> str:
    return json.loads(sent[1]["body"])["detail"]


async def answer_ok(send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def run(coro):
    return asyncio.run(coro)


def test_a_slow_request_is_answered_504_at_its_deadline():
    async def slow(scope, receive, send):
        await receive()
        await asyncio.sleep(10)

    limited = RequestTimeout(slow, TIMEOUT)

    async def main():
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = await call(limited)
        return sent, loop.time() - started

    sent, took = run(main())
    assert status(sent) == 504 and "request_timeout_s" in detail(sent)
    assert TIMEOUT <= took < TIMEOUT + 0.2, took
    assert (b"retry-after", b"1") in sent[0]["headers"]


def test_a_body_that_stalls_is_408():
    async def reads(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await answer_ok(send)

    sent = run(call(RequestTimeout(reads, TIMEOUT), [b'{"a":', b"1}"]))
    assert status(sent) == 200  # the whole body came at once: answered
    sent = run(call(RequestTimeout(reads, TIMEOUT), [b'{"a":', b"1}"], gap=0.15))
    assert status(sent) == 408 and "did not arrive" in detail(sent)


def test_fast_requests_pass_and_the_watchdog_stops_when_idle():
    watched = []  # whether a watchdog ran while each request was in flight

    async def quick(scope, receive, send):
        await receive()
        await asyncio.sleep(0.001)
        watched.append(bool(limited._flights and limited._watchdogs))
        await answer_ok(send)

    limited = RequestTimeout(quick, TIMEOUT)

    async def main():
        results = await asyncio.gather(*(call(limited) for _ in range(200)))
        assert all(status(s) == 200 for s in results)
        # Asserted inside the requests: on a loaded machine the watchdog may already have
        # stopped by the time gather returns.
        assert watched == [True] * 200, watched
        await asyncio.sleep(limited.tick_s * 3)
        assert not limited._flights and not limited._watchdogs  # then stops waking the loop
        # and the next request starts a new one
        assert status(await call(limited)) == 200

    run(main())


def test_an_answer_that_started_is_not_cut_off():
    async def streams(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(TIMEOUT * 2)
        await send({"type": "http.response.body", "body": b"late but whole"})

    sent = run(call(RequestTimeout(streams, TIMEOUT)))
    assert status(sent) == 200 and sent[1]["body"] == b"late but whole"


def test_a_cancellation_that_is_not_the_watchdogs_goes_through():
    async def slow(scope, receive, send):
        await receive()
        await asyncio.sleep(10)

    limited = RequestTimeout(slow, 5.0)

    async def main():
        task = asyncio.ensure_future(call(limited))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_an_error_of_the_app_is_its_own():
    async def fails(scope, receive, send):
        raise TimeoutError("the app's own")

    with pytest.raises(TimeoutError, match="the app's own"):
        run(call(RequestTimeout(fails, TIMEOUT)))


def test_each_request_has_its_own_deadline():
    async def waits(scope, receive, send):
        body = json.loads((await receive())["body"])
        await asyncio.sleep(body["s"])
        await answer_ok(send)

    limited = RequestTimeout(waits, TIMEOUT)

    async def main():
        return await asyncio.gather(
            call(limited, [b'{"s": 0.05}']),
            call(limited, [b'{"s": 1.0}']),
            call(limited, [b'{"s": 0.1}']),
        )

    assert [status(s) for s in run(main())] == [200, 504, 200]
