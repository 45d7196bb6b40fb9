"""The labelling queue over HTTP: predictions the sampler picks are claimed, labelled, skipped."""

from __future__ import annotations

import time

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
