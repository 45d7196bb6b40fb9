"""The labelling queue over HTTP: predictions the sampler picks are claimed, labelled, skipped."""

from __future__ import annotations

import threading
import time

import httpx

from onlearn.store import open_store
from tests.e2e.helpers import field_error, message, strict_json, wait_until, xy_rows

M = "/models/al"


def fill(api, n=40, seed=1):
    before = api.get(f"{M}/queue/stats").json()
    truth = {}
    for features, label in xy_rows(n, seed):
        answer = strict_json(api.post(f"{M}/predict", json={"features": features}))
        assert answer["queued"] is True  # budget 1: every prediction is asked for
        truth[answer["prediction_id"]] = label

    def queued_all():
        now = api.get(f"{M}/queue/stats").json()
        return now["pushed"] + now["duplicates"] - before["pushed"] - before["duplicates"] >= n

    wait_until(queued_all)
    return truth


def fill_queued(api, n, seed):
    """Predict until ``n`` predictions were queued (once the model has learned, the sampler
    passes over the cases it is sure of), and wait until the queue holds them."""
    before = api.get(f"{M}/queue/stats").json()
    queued = 0
    for features, _ in xy_rows(50 * n, seed):
        answer = strict_json(api.post(f"{M}/predict", json={"features": features}))
        queued += answer["queued"]
        if queued == n:
            break
    assert queued == n, f"only {queued} of {50 * n} predictions were queued"

    def pushed():
        now = api.get(f"{M}/queue/stats").json()
        return now["pushed"] + now["duplicates"] - before["pushed"] - before["duplicates"] >= n

    wait_until(pushed)


def claim(api, **body):
    response = api.post(f"{M}/queue/claim", json=body)
    assert response.status_code == 200, response.text
    return strict_json(response)["items"]


def test_claim_label_skip_and_stats(queue_api):
    api = queue_api
    truth = fill(api)
    items = claim(api, limit=3, labeller="ann")
    assert len(items) == 3
    item = items[0]
    assert set(item) >= {
        "item_id",
        "prediction_id",
        "claim_id",
        "features",
        "proba",
        "uncertainty",
        "lease_expires_at",
    }
    assert item["classes"] == ["pos", "neg"] and item["reason"] in ("uncertain", "random")
    body = {"label": truth[item["prediction_id"]], "claim_id": item["claim_id"], "labeller": "ann"}
    first = api.post(f"{M}/queue/{item['item_id']}/label", json=body)
    assert first.status_code == 200, first.text
    again = api.post(f"{M}/queue/{item['item_id']}/label", json=body)
    assert again.json() == first.json()  # labelling twice has the effect of labelling once
    other = "neg" if body["label"] == "pos" else "pos"
    refused = api.post(f"{M}/queue/{item['item_id']}/label", json={**body, "label": other})
    assert refused.status_code == 409, refused.text  # a different label is never a silent 200
    detail = refused.json()["detail"]
    assert detail["used"] is False and detail["recorded"]["seq"] == first.json()["seq"]
    assert detail["recorded"]["source"] == "human" and detail["recorded"]["labeller"] == "ann"
    skipped = api.post(
        f"{M}/queue/{items[1]['item_id']}/skip", json={"claim_id": items[1]["claim_id"]}
    )
    assert skipped.json()["state"] == "queued"
    stats = api.get(f"{M}/queue/stats").json()
    assert stats["labelled"] == 1 and stats["skipped"] == 1 and stats["claimed"] == 1
    assert stats["budget"]["budget"] == 1.0 and stats["budget"]["asked"] >= 40
    metrics = api.get(f"{M}/metrics").json()["versions"]["v1"]
    assert metrics["labels_by_source"] == {"human": 1}
    # The label is feedback from a person: the model's log holds it.
    assert api.get("/models/al").json()["counters"]["labels_applied"] == 1


def test_a_label_after_the_lease_was_lost_is_409(queue_api):
    api = queue_api
    fill(api, 10, seed=2)
    (mine,) = claim(api, limit=1, lease_s=0.3, labeller="ann")
    time.sleep(0.4)
    theirs = claim(api, limit=50, labeller="bob")
    assert mine["item_id"] in [i["item_id"] for i in theirs]
    late = api.post(
        f"{M}/queue/{mine['item_id']}/label", json={"label": "pos", "claim_id": mine["claim_id"]}
    )
    message(late, 409, "someone else", "claim another")


def test_bad_queue_requests(queue_api):
    api = queue_api
    field_error(
        api.post(f"{M}/queue/claim", json={"limit": 0}), ["body", "limit"], "range", "limit"
    )
    field_error(
        api.post(f"{M}/queue/claim", json={"lease_s": -5}), ["body", "lease_s"], "range", "lease_s"
    )
    field_error(
        api.post(f"{M}/queue/claim", json={"limit": "many"}), ["body", "limit"], "int_parsing"
    )
    message(api.post(f"{M}/queue/nope/label", json={"label": "pos"}), 404, "nope", "claim")
    message(api.post("/models/passive/queue/claim", json={}), 404, "[models.passive.active]")
    message(api.get("/models/zzz/queue/stats"), 404, "zzz")
    fill(api, 5, seed=3)
    (item,) = claim(api, limit=1)
    field_error(
        api.post(
            f"{M}/queue/{item['item_id']}/label",
            json={"label": "maybe", "claim_id": item["claim_id"]},
        ),
        ["body", "label"],
        "allowed",
        "pos",
    )


def test_skip_and_release_answer_one_status_per_situation(queue_api):
    fill_queued(queue_api, 6, seed=5)
    mine, other = claim(queue_api, limit=2, labeller="eve")
    url = f"{M}/queue/{mine['item_id']}"
    # Release: back in the queue, for anyone; twice is once; a claim that is not the item's is
    # 409; release needs the claim id.
    field_error(queue_api.post(f"{url}/release", json={}), ["body", "claim_id"], "missing")
    before = queue_api.get(f"{M}/queue/stats").json()
    released = queue_api.post(f"{url}/release", json={"claim_id": mine["claim_id"]})
    assert released.json() == {"item_id": mine["item_id"], "state": "queued"}, released.text
    again = queue_api.post(f"{url}/release", json={"claim_id": mine["claim_id"]})
    assert again.status_code == 200, again.text
    after = queue_api.get(f"{M}/queue/stats").json()
    assert after["released"] - before["released"] == 1 and after["skipped"] == before["skipped"]
    message(queue_api.post(f"{url}/release", json={"claim_id": "f00d"}), 409, "someone else")
    message(queue_api.post(f"{M}/queue/nope/release", json={"claim_id": "f00d"}), 404, "nope")
    # Skip: a claim someone else holds now is 409 (skip or label alike); a labelled item 409;
    # an item that left the queue 410.
    (taken,) = [
        i for i in claim(queue_api, limit=10, labeller="fay") if i["item_id"] == mine["item_id"]
    ]
    for action, body in [("skip", {}), ("label", {"label": "pos"})]:
        stale = queue_api.post(f"{url}/{action}", json={**body, "claim_id": mine["claim_id"]})
        message(stale, 409, "someone else", "claim another")
        unclaimed = queue_api.post(f"{url}/{action}", json=body)
        message(unclaimed, 409, "someone else", "claim_id")
    label = {"label": "pos", "claim_id": taken["claim_id"]}
    assert queue_api.post(f"{url}/label", json=label).status_code == 200
    for action in ("skip", "release"):
        done = queue_api.post(f"{url}/{action}", json={"claim_id": taken["claim_id"]})
        message(done, 409, "labelled already")
    # max_skips = 2 for this model: the second skip takes the item out of the queue.
    other_url = f"{M}/queue/{other['item_id']}"
    skipped = queue_api.post(f"{other_url}/skip", json={"claim_id": other["claim_id"]})
    assert skipped.json()["state"] == "queued"
    assert other["item_id"] not in [
        i["item_id"] for i in claim(queue_api, limit=50, labeller="eve")
    ]
    (back,) = [
        i for i in claim(queue_api, limit=50, labeller="gus") if i["item_id"] == other["item_id"]
    ]
    out = queue_api.post(f"{other_url}/skip", json={"claim_id": back["claim_id"]})
    assert out.json()["state"] == "skipped", out.text
    for action, body in [("skip", {}), ("label", {"label": "pos"}), ("release", {"claim_id": "x"})]:
        message(queue_api.post(f"{other_url}/{action}", json=body), 410, "skipped", "claim another")


def test_racing_labellers_over_http_a_409_label_is_never_used(queue_server, queue_api):
    """Ann's leases run out; then, item after item at once, ann labels "pos" with her stale
    claim, cat labels "pos" sending neither claim id nor name, and bob claims the top item and
    labels it "neg". Each item ends with one label in the log, answered 200 with its seq to
    whoever sent it; a label answered 409 or 410 is never the one used, and when bob held the
    item, bob's label is."""
    n = 30
    fill_queued(queue_api, n, seed=4)
    anns = claim(queue_api, limit=n, lease_s=0.5, labeller="ann")
    assert len(anns) == n
    time.sleep(0.6)
    start = threading.Barrier(3)
    answers: dict[str, dict[str, tuple[int, dict]]] = {"ann": {}, "bob": {}, "cat": {}}
    errors: list[BaseException] = []

    def post(client, item_id, body):
        response = client.post(f"{M}/queue/{item_id}/label", json=body)
        assert response.status_code in (200, 409, 410), response.text
        return response.status_code, response.json()

    def racer(who: str) -> None:
        try:
            with httpx.Client(base_url=queue_server.url, timeout=30) as client:
                for item in anns:
                    start.wait()
                    if who == "ann":
                        body = {"label": "pos", "claim_id": item["claim_id"], "labeller": who}
                        answers[who][item["item_id"]] = post(client, item["item_id"], body)
                    elif who == "cat":
                        answers[who][item["item_id"]] = post(
                            client, item["item_id"], {"label": "pos"}
                        )
                    else:
                        got = client.post(f"{M}/queue/claim", json={"limit": 1, "labeller": who})
                        for mine in got.json()["items"]:
                            body = {"label": "neg", "claim_id": mine["claim_id"], "labeller": who}
                            answers[who][mine["item_id"]] = post(client, mine["item_id"], body)
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=racer, args=(who,)) for who in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"a racer failed: {errors[0]!r}"
    with open_store(queue_server.store_url) as store:
        events = {e.key: e for e in store.log.read("al", 0, limit=100_000)}
    for item in anns:
        item_id = item["item_id"]
        event = events[f"prediction:{item['prediction_id']}"]
        # The server process wrote the pace weight of a label the strategy bought (1 / budget,
        # 1 here); one of the random evaluation slice has none.
        sampled = event.payload["sampled"]
        assert event.payload["pace"] == {"uncertain": 1.0, "random": None}[sampled]
        got = {who: answers[who][item_id] for who in answers if item_id in answers[who]}
        senders = ["bob"] if event.payload["label"] == "neg" else ["ann", "cat"]
        assert any(got.get(who, (0,))[0] == 200 for who in senders), (
            f"{item_id}: the log holds {event.payload['label']!r}, whose senders got {got}"
        )
        for status, body in got.values():
            if status == 200:
                assert body["seq"] == event.seq, f"{item_id}: {got}"
        if "bob" in got:
            assert senders == ["bob"], f"{item_id}: bob held it, yet the log has 'pos': {got}"
