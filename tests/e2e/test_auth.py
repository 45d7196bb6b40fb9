"""Access control against real server processes: every route of the app, with no key, a wrong
key, a key of each role; the refusal to serve a network address without keys; the pages asking
for a key; and no endpoint that takes a pickle from a client."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from onlearn.config import Settings
from serving.auth import route_table
from tests.e2e.configs import AUTH_KEYS, AUTH_SECRET_MODEL
from tests.e2e.helpers import (
    READY_TIMEOUT,
    shutdown,
    sqlite_url,
    wait_until,
    write_config,
    xy_model,
    xy_rows,
)
from tests.servers import ROOT, ServerProcess
from tests.test_auth import EXPECTED

M = "/models/guarded"
KEYS = {role: key for _, (role, key) in AUTH_KEYS.items()}
PARAMS = {"name": "guarded", "model": "guarded", "item_id": "0" * 32, "version": "v1"}
PARAMS["job_id"] = "no-such-job"


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


def every_route() -> list[tuple[str, str]]:
    """Every (method, path) the app serves: its whole route table (documented routes, the fast
    routes in front of them, the pages), so that a new route cannot slip through."""
    from serving.app import create_app

    app = create_app(Settings(store_url="memory://"))
    return sorted(
        {
            (method, path)
            for path, methods in route_table(app.router)
            for method in methods or ()
            if method != "HEAD"
        }
    )


ROUTES = every_route()


def call(api: httpx.Client, method: str, path: str, headers: dict) -> httpx.Response:
    url = path.format(**PARAMS)
    # An empty JSON object: enough to pass the key check; what happens after is not this test's.
    return api.request(method, url, headers=headers, json={} if method == "POST" else None)


@pytest.fixture(scope="module")
def api(auth_server: ServerProcess):
    with httpx.Client(base_url=auth_server.url, timeout=30) as client:
        yield client


def test_the_route_table_is_the_served_one(api):
    """What the test iterates is what the server documents (the fast and hidden routes on top)."""
    documented = {
        (method.upper(), path)
        for path, operations in api.get("/openapi.json").json()["paths"].items()
        for method in operations
    }
    assert documented <= set(ROUTES)
    assert {("POST", "/models/{name}/predict"), ("GET", "/ui/label/{model}")} <= set(ROUTES)
    assert set(ROUTES) == {tuple(r.split(" ", 1)) for r in EXPECTED}


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_each_route_checks_the_role(api, method, path):
    roles = EXPECTED[f"{method} {path}"]
    if not roles:  # open
        assert call(api, method, path, {}).status_code not in (401, 403)
        return
    # No key: 401, saying how to send one.
    response = call(api, method, path, {})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer <key>" in response.json()["detail"]
    # A key the server does not know, in either header.
    for headers in ({"Authorization": "Bearer onl_not-a-key"}, {"X-API-Key": "onl_not-a-key"}):
        response = call(api, method, path, headers)
        assert response.status_code == 401, response.text
        assert "not valid" in response.json()["detail"]
    # Each role: in when the route takes it (admin always is), else 403 naming what is needed.
    for role, key in KEYS.items():
        allowed = role == "admin" or role in {r.value for r in roles}
        for headers in (bearer(role), {"X-API-Key": key}):
            response = call(api, method, path, headers)
            if allowed:
                assert response.status_code not in (401, 403), (role, response.text)
                assert response.status_code < 500, (role, response.text)
            else:
                assert response.status_code == 403, (role, response.text)
                detail = response.json()["detail"]
                assert "needs a key with role" in detail and "admin" in detail, detail
                assert f"has role {role}" in detail, detail


def test_an_application_and_a_labeller_do_their_work(api):
    features, label = xy_rows(1, seed=3)[0]
    answer = api.post(f"{M}/predict", json={"features": features}, headers=bearer("predict"))
    assert answer.status_code == 200 and answer.json()["queued"]
    wait_until(lambda: api.get(f"{M}/queue/stats", headers=bearer("label")).json()["depth"] >= 1)
    items = api.post(f"{M}/queue/claim", json={"labeller": "eve"}, headers=bearer("label"))
    item = items.json()["items"][0]
    done = api.post(
        f"{M}/queue/{item['item_id']}/label",
        json={"label": label, "claim_id": item["claim_id"]},
        headers=bearer("label"),
    )
    assert done.status_code == 200, done.text
    # The labeller cannot change who answers, nor predict.
    refused = api.post(f"{M}/rollback", json={}, headers=bearer("label"))
    assert refused.status_code == 403
    assert (
        api.post(f"{M}/predict", json={"features": features}, headers=bearer("label")).status_code
        == 403
    )


def test_the_admin_key_is_the_actor_of_what_it_starts(api):
    job = api.post(f"{M}/retrain", json={"reason": "audit"}, headers=bearer("admin"))
    assert job.status_code == 202, job.text
    found = api.get(f"/jobs/{job.json()['job_id']}", headers=bearer("admin")).json()
    assert "ops" in str(found), found  # the key's name, not "api"


@pytest.mark.parametrize(
    "value",
    [
        "Bearer",
        "Token abc",
        "Basic b25sZWFybjpzZWNyZXQ=",
        "bearer \u00e9t\u00e9",
        "Bearer " + "x" * 8000,
    ],
)
def test_malformed_credentials_are_a_401_never_a_500(api, value):
    response = api.post(
        f"{M}/predict", json={"features": {}}, headers={"Authorization": value.encode()}
    )
    assert response.status_code == 401, response.text


def test_the_docs_declare_the_bearer_scheme(api):
    doc = api.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert doc["security"] == [{"apiKey": []}]


# No endpoint takes a pickle from a client.


class Tripwire:
    """Unpickling it creates a file: proof that something unpickled what a client sent."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_no_endpoint_unpickles_a_client_body(api, auth_server, tmp_path):
    from onlearn.models.artifacts import dump_signed

    marker = tmp_path / "unpickled"
    blobs = [pickle.dumps(Tripwire(marker)), dump_signed(Tripwire(marker), b"a guessed secret")]
    for method, path in ROUTES:
        if method != "POST":
            continue
        for blob in blobs:
            for kind in (
                "application/octet-stream",
                "application/python-pickle",
                "application/json",
            ):
                response = api.request(
                    method,
                    path.format(**PARAMS),
                    content=blob,
                    headers={**bearer("admin"), "content-type": kind},
                )
                assert 400 <= response.status_code < 500, (path, kind, response.text)
    assert not marker.exists()
    # And no documented body is anything but JSON.
    doc = api.get("/openapi.json").json()
    bodies = {
        content
        for operations in doc["paths"].values()
        for operation in operations.values()
        for content in operation.get("requestBody", {}).get("content", {})
    }
    assert bodies == {"application/json"}


def test_a_json_body_that_is_not_utf8_is_one_422_on_every_route_that_takes_a_body(api):
    # FastAPI's routes used to answer a bare 400 "There was an error parsing the body" where the
    # fast routes answered 422: one mistake, one answer, naming the body and the byte.
    doc = api.get("/openapi.json").json()
    paths = sorted(p for p, ops in doc["paths"].items() if "requestBody" in ops.get("post", {}))
    assert {"/models/{name}/predict", "/models/{name}/retrain"} <= set(paths)
    body = b'{"features": "caf\xe9"}'  # Latin-1, not UTF-8
    for path in paths:
        response = api.post(
            path.format(**PARAMS),
            content=body,
            headers={**bearer("admin"), "content-type": "application/json"},
        )
        assert response.status_code == 422, (path, response.text)
        [error] = response.json()["detail"]
        assert error["type"] == "json_invalid", (path, error)
        assert error["loc"] == ["body", body.index(b"\xe9")], (path, error)
        assert "not UTF-8" in error["msg"], (path, error)


# The label page asks for a key.


def test_the_label_page_asks_for_a_key_and_labels_with_it(api, auth_server):
    from tests.e2e.browser import browser_page

    for features, _ in xy_rows(3, seed=21):
        api.post(f"{M}/predict", json={"features": features}, headers=bearer("predict"))
    wait_until(lambda: api.get(f"{M}/queue/stats", headers=bearer("label")).json()["depth"] >= 3)
    with browser_page() as page:
        page.goto(f"{auth_server.url}/ui/label/guarded")
        page.wait_for_selector("#keybox:not([hidden])")
        page.fill("#apikey", "onl_wrong")
        page.click("#keybox button")
        page.wait_for_function("document.querySelector('#keymsg').textContent.includes('refused')")
        page.fill("#apikey", KEYS["label"])
        page.click("#keybox button")
        page.wait_for_selector("#card:not([hidden])")
        page.keyboard.press("1")
        page.wait_for_function(
            "document.querySelector('#message').textContent.startsWith('Labelled')"
        )
        assert page.evaluate("sessionStorage.getItem('onlearn.apiKey')") == KEYS["label"]
        assert page.locator("#keybox").is_hidden()
        assert page.js_errors == []


def test_without_a_key_no_page_or_open_route_names_a_model(api):
    """The pages are open (they ask for a key), so they must not carry what the key protects:
    the label index listed the models with a queue, and the label page said 404 or 200 by
    whether a model existed."""
    opened = [path for method, path in ROUTES if method == "GET" and not EXPECTED[f"GET {path}"]]
    assert {"/ui/label", "/ui/label/{model}", "/ui/", "/openapi.json"} <= set(opened)
    for path in opened:
        for name in ("guarded", AUTH_SECRET_MODEL):
            url = path.format(model=name, name="swagger-ui-bundle.js")  # {name}: a docs asset
            response = api.get(url, follow_redirects=True)
            assert response.status_code == 200, (path, response.text)
            assert AUTH_SECRET_MODEL not in response.text, path
    # The label page is the same page for a model that exists and one that does not.
    known = api.get(f"/ui/label/{AUTH_SECRET_MODEL}")
    unknown = api.get("/ui/label/no_such_model")
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    # What the pages call to list and show models needs a key.
    for path in ("/models", f"/models/{AUTH_SECRET_MODEL}", f"/models/{AUTH_SECRET_MODEL}/drift"):
        response = api.get(path)
        assert response.status_code == 401, (path, response.text)
        assert AUTH_SECRET_MODEL not in response.text
    # With a key, the label index lists the models that have a queue.
    listed = {
        m["name"]: m["labelling"]
        for m in api.get("/models", headers=bearer("label")).json()["models"]
    }
    assert listed == {"guarded": True, AUTH_SECRET_MODEL: True}


def test_the_label_page_with_a_key_lacking_the_role_says_so_and_takes_another(api, auth_server):
    """A predict key (an application's) on the labelling page: the page names the role it
    needs, takes a labeller's key, then shows the queue."""
    from tests.e2e.browser import browser_page

    for features, _ in xy_rows(2, seed=33):
        api.post(f"{M}/predict", json={"features": features}, headers=bearer("predict"))
    wait_until(lambda: api.get(f"{M}/queue/stats", headers=bearer("label")).json()["depth"] >= 1)
    with browser_page() as page:
        # The tab already holds a key (given on another page of the same tab).
        page.add_init_script(f"sessionStorage.setItem('onlearn.apiKey', {KEYS['predict']!r})")
        page.goto(f"{auth_server.url}/ui/label/guarded")
        page.wait_for_selector("#keybox:not([hidden])")
        why = page.locator("#keymsg").inner_text()
        assert "lacks the role" in why and "needs a key with role admin or label" in why, why
        assert "key 'app' has role predict" in why, why
        assert page.locator("#card").is_hidden()
        page.fill("#apikey", KEYS["label"])
        page.click("#keybox button")
        page.wait_for_selector("#card:not([hidden])")
        assert page.locator("#features tr").count() == 2
        assert page.locator("#keybox").is_hidden()
        assert page.evaluate("sessionStorage.getItem('onlearn.apiKey')") == KEYS["label"]
        assert page.js_errors == []


def test_the_label_index_lists_the_models_once_given_a_key(auth_server):
    from tests.e2e.browser import browser_page

    with browser_page() as page:
        page.goto(f"{auth_server.url}/ui/label")
        page.wait_for_selector("#keybox:not([hidden])")
        assert AUTH_SECRET_MODEL not in page.content()
        page.fill("#apikey", KEYS["label"])
        page.click("#keybox button")
        page.wait_for_selector(f"#models a[href='/ui/label/{AUTH_SECRET_MODEL}']")
        assert page.locator("#models a").all_inner_texts() == ["guarded", AUTH_SECRET_MODEL]
        assert page.js_errors == []


# Serving on a network address


def serve_command(config: Path, directory: Path, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", "onlearn.tools.cli", "serve", "--config", str(config),
        "--store", sqlite_url(directory / "onlearn.db"), *flags,
    ]  # fmt: skip


def test_a_network_address_without_keys_is_refused(tmp_path):
    from tests.e2e.helpers import xy_model

    config = write_config(tmp_path, xy_model("m"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONLEARN_")}
    done = subprocess.run(
        serve_command(config, tmp_path, "--host", "0.0.0.0", "--port", "1"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "0.0.0.0 without API keys" in done.stderr and "--allow-no-auth" in done.stderr


def test_a_network_address_with_the_flag_or_with_keys_serves(tmp_path):
    from tests.e2e.helpers import xy_model

    config = write_config(tmp_path, xy_model("m"))
    open_server = ServerProcess(
        config, sqlite_url(tmp_path / "open.db"), args=("--host", "0.0.0.0", "--allow-no-auth")
    )
    # Two workers: the uvicorn factory in each worker process reads the keys from the
    # environment again.
    keyed = ServerProcess(
        config,
        sqlite_url(tmp_path / "keyed.db"),
        workers=2,
        args=("--host", "0.0.0.0"),
        env={"ONLEARN_API_KEYS": "app:predict:onl_env-key"},
    )
    try:
        open_server.launch()
        keyed.launch()
        open_server.wait_ready(READY_TIMEOUT)
        keyed.wait_ready(READY_TIMEOUT)
        body = {"features": {"x": 0.1, "y": 0.2}}
        assert httpx.post(f"{open_server.url}/models/m/predict", json=body).status_code == 200
        assert httpx.post(f"{keyed.url}/models/m/predict", json=body).status_code == 401
        for _ in range(4):  # whichever worker answers
            ok = httpx.post(
                f"{keyed.url}/models/m/predict", json=body, headers={"X-API-Key": "onl_env-key"}
            )
            assert ok.status_code == 200, ok.text
    finally:
        shutdown(open_server)
        shutdown(keyed)


# Clients


def test_the_client_and_the_cli_send_the_key(auth_server, capsys, monkeypatch):
    from onlearn.tools.cli import main
    from onlearn.tools.client import Client, ClientError

    monkeypatch.delenv("ONLEARN_API_KEY", raising=False)
    with Client(auth_server.url) as client:
        with pytest.raises(ClientError) as refused:
            client.models()
        assert refused.value.status == 401
    with Client(auth_server.url, api_key=KEYS["predict"]) as client:
        assert [m["name"] for m in client.models()] == ["guarded", AUTH_SECRET_MODEL]
    monkeypatch.setenv("ONLEARN_API_KEY", KEYS["label"])
    with Client(auth_server.url) as client:  # from the environment
        assert client.queue_stats("guarded")["depth"] >= 0

    url = ["--url", auth_server.url]
    assert main(["models", *url, "--api-key", KEYS["predict"], "list", "guarded"]) == 0
    assert "champion" in capsys.readouterr().out
    assert main(["models", *url, "--api-key", "onl_wrong", "list", "guarded"]) == 1
    assert "pass --api-key or set $ONLEARN_API_KEY" in capsys.readouterr().err
    args = ["models", *url, "--api-key", KEYS["label"], "rollback", "guarded"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "needs a key with role admin" in err and "lacks the role" in err


# Keys are reloaded on SIGHUP.


def test_sighup_reloads_the_keys_and_a_broken_config_keeps_the_current_ones(tmp_path):
    from onlearn.access import toml_entry

    def config(*keys: tuple[str, str]) -> str:
        entries = ",\n  ".join(toml_entry(name, key, ["predict"]) for name, key in keys)
        return f"[security]\napi_keys = [\n  {entries},\n]\n{xy_model('m')}"

    old, new = ("old", "onl_old-key-1234"), ("new", "onl_new-key-5678")
    path = write_config(tmp_path, config(old))
    server = ServerProcess(path, sqlite_url(tmp_path / "onlearn.db")).start(READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:

            def status(key: str) -> int:
                body = {"features": {"x": 0.1, "y": 0.2}}
                headers = {"Authorization": f"Bearer {key}"}
                return api.post("/models/m/predict", json=body, headers=headers).status_code

            assert (status(old[1]), status(new[1])) == (200, 401)
            # Rotate: the new key in, the old one out, then SIGHUP.
            path.write_text(config(new))
            server.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: status(new[1]) == 200, timeout=30)
            assert status(old[1]) == 401
            # A broken edit, or one that leaves no key, changes nothing and stops nothing.
            for broken in ("[security\n", f"[security]\napi_keys = []\n{xy_model('m')}"):
                path.write_text(broken)
                server.proc.send_signal(signal.SIGHUP)
                time.sleep(1.0)
                assert server.proc.poll() is None, server.output()
                assert (status(new[1]), status(old[1])) == (200, 401)
            assert "API keys not reloaded" in server.output()
    finally:
        shutdown(server)


def test_sighup_to_a_server_without_keys_leaves_it_serving(tmp_path):
    path = write_config(tmp_path, xy_model("m"))
    server = ServerProcess(path, sqlite_url(tmp_path / "onlearn.db")).start(READY_TIMEOUT)
    try:
        server.proc.send_signal(signal.SIGHUP)  # its default action would stop the process
        wait_until(lambda: "access control is off" in server.output(), timeout=30)
        assert server.proc.poll() is None
        with httpx.Client(base_url=server.url, timeout=30) as api:
            body = {"features": {"x": 0.1, "y": 0.2}}
            assert api.post("/models/m/predict", json=body).status_code == 200
    finally:
        shutdown(server)
