"""Access control without a server: keys, their parsing and hashing, the constant-time lookup,
the role of every route, and the refusal to serve a network address without keys.

The same rules over HTTP, against a real server, are in tests/e2e/test_auth.py.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from onlearn import access
from onlearn.access import (
    ApiKey,
    Keyring,
    Role,
    hash_key,
    keys_from_config,
    new_key,
    parse_env_keys,
    toml_entry,
)
from onlearn.config import Settings, load_settings, settings_from_mapping
from onlearn.errors import ConfigError
from onlearn.tools.cli import is_loopback, main, open_without_keys
from serving.auth import ANY_KEY, DEFAULT, OPEN, POLICY, _presented, needed, route_table

P, L, A = Role.PREDICT, Role.LABEL, Role.ADMIN

# Keys


def test_a_key_is_held_as_its_sha256_only():
    key = new_key()
    assert key.startswith("onl_") and len(key) > 40 and new_key() != key
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    (entry,) = parse_env_keys(f"app:predict:{key}")
    assert entry.digest == hashlib.sha256(key.encode()).digest()
    assert key not in repr(entry) and entry.digest.hex() not in repr(entry)


def test_environment_keys_name_roles_and_key():
    keys = parse_env_keys(" app:predict:k1, people:label+predict:k2 ,ops:admin:a:b:c,")
    assert [(k.name, k.roles) for k in keys] == [
        ("app", {P}),
        ("people", {L, P}),
        ("ops", {A}),
    ]
    assert Keyring(keys).find("a:b:c").name == "ops"  # everything after the second colon


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("app:predict", "entry 1 is not name:roles:key"),
        ("app:predict:", "entry 1 is not name:roles:key"),
        ("app:root:k", "unknown role 'root'; roles are predict, label, admin"),
        ("app::k", "unknown role ''"),
        ("a pp:predict:k", "a key needs a name"),
        ("app:predict:k1,app:label:k2", "two keys are named 'app'"),
        ("a:predict:same,b:label:same", "key 'b' is the same key as another entry"),
    ],
)
def test_bad_environment_keys_are_refused_with_the_fix(value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_env_keys(value)


def test_config_keys_are_hashes():
    keys = keys_from_config(
        [
            {"name": "app", "key_sha256": hash_key("k1"), "roles": ["predict"]},
            {"name": "ops", "key_sha256": hash_key("k2").upper(), "roles": ["admin", "label"]},
        ]
    )
    ring = Keyring(keys)
    assert ring.find("k1").name == "app" and ring.find("k2").roles == {A, L}
    assert ring.find(hash_key("k1")) is None  # the hash is not the key


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"name": "app"}, "must be a list"),
        (["app"], "[0] must be a table"),
        ([{"name": "app", "key": "plain", "roles": ["predict"]}], "a plain key does not belong"),
        ([{"name": "app", "key_sha256": "abc", "roles": ["predict"]}], "64 hex digits"),
        ([{"name": "app", "key_sha256": hash_key("k"), "roles": []}], "non-empty list"),
        ([{"name": "app", "key_sha256": hash_key("k")}], "non-empty list"),
        (
            [{"name": "app", "key_sha256": hash_key("k"), "roles": ["predict"], "ttl": 1}],
            "unknown entries ttl",
        ),
    ],
)
def test_bad_config_keys_are_refused_with_the_fix(entries, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        keys_from_config(entries)


def test_keys_come_from_the_config_and_the_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[security]\napi_keys = [{toml_entry('app', 'k1', ['predict'])}]\n")
    settings = load_settings(config, environ={"ONLEARN_API_KEYS": "ops:admin:k2"})
    assert [k.name for k in settings.api_keys] == ["app", "ops"]
    assert load_settings(config, environ={}).api_keys[0].name == "app"
    with pytest.raises(ConfigError, match="two keys are named 'app'"):
        load_settings(config, environ={"ONLEARN_API_KEYS": "app:admin:k3"})
    assert load_settings(None, environ={"ONLEARN_ALLOW_NO_AUTH": "1"}).allow_no_auth
    with pytest.raises(ConfigError, match="unknown entr"):
        settings_from_mapping({"security": {"api_key": []}})


def test_the_lookup_compares_with_every_key_in_constant_time(monkeypatch):
    keys = [
        ApiKey(f"k{i}", hashlib.sha256(f"key{i}".encode()).digest(), frozenset({P}))
        for i in range(5)
    ]
    compared: list[tuple[bytes, bytes]] = []

    def compare_digest(a, b):
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(access.hmac, "compare_digest", compare_digest)
    ring = Keyring(keys)
    assert ring.find("key0").name == "k0"
    # Every key compared, even after the first one matched, and only digests of equal length:
    # the time taken does not depend on which key matched or how close a guess was.
    assert len(compared) == 5
    assert all(len(a) == len(b) == 32 for a, b in compared)
    compared.clear()
    assert ring.find("nothing like it") is None and len(compared) == 5


def test_a_key_allows_its_roles_and_admin_allows_everything():
    def key(*roles):
        return ApiKey("k", b"\0" * 32, frozenset(roles))

    assert key(P).allows(frozenset({P, L})) and not key(P).allows(frozenset({A}))
    assert key(L).allows(frozenset({L})) and not key(L).allows(frozenset({P}))
    assert all(key(A).allows(frozenset({r})) for r in Role)


def test_keys_new_prints_a_key_and_the_config_line_with_its_hash(capsys):
    assert main(["keys", "new", "--name", "app", "--roles", "predict,label"]) == 0
    out = capsys.readouterr().out
    key = re.search(r"^  (onl_\S+)$", out, re.M).group(1)
    line = re.search(r"^  (\{ name = .*\}),$", out, re.M).group(1)
    import tomllib

    (entry,) = keys_from_config(tomllib.loads(f"k = [{line}]")["k"])
    assert entry.name == "app" and entry.roles == {P, L}
    assert Keyring([entry]).find(key) is entry
    assert f"ONLEARN_API_KEYS=app:label+predict:{key}" in out
    assert main(["keys", "new", "--name", "app", "--roles", "root"]) == 1
    assert "unknown role 'root'" in capsys.readouterr().err


# Headers


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ([(b"authorization", b"Bearer abc")], b"abc"),
        ([(b"authorization", b"bearer  abc ")], b"abc"),
        ([(b"x-api-key", b"abc")], b"abc"),
        ([(b"x-api-key", b"xyz"), (b"authorization", b"Bearer abc")], b"abc"),
        ([(b"authorization", b"Basic abc")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"x-api-key", b"")], None),
        ([], None),
    ],
)
def test_the_key_is_read_from_bearer_or_x_api_key(headers, key):
    assert _presented(headers) == key


@pytest.mark.parametrize(
    ("credentials", "key"),
    [
        (b"label-studio:onl_abc", b"onl_abc"),
        (b":onl_abc", b"onl_abc"),  # the user name is free, even empty
        (b"user:pass:with:colons", b"pass:with:colons"),
        (b"user-without-password", None),
        (b"user:", None),
    ],
)
def test_basic_gives_its_password_as_the_key_where_basic_is_taken(credentials, key):
    token = base64.b64encode(credentials)
    headers = [(b"authorization", b"Basic " + token)]
    assert _presented(headers, basic=True) == key
    assert _presented(headers) is None  # elsewhere Basic is no key
    assert _presented([(b"authorization", b"Basic not base64!")], basic=True) is None


# Roles of routes

# The role matrix, written out here apart from serving/auth.py: a change of either shows.
EXPECTED = {
    "GET /healthz": OPEN,
    "GET /readyz": OPEN,
    "GET /": OPEN,
    "GET /docs": OPEN,
    "GET /docs/oauth2-redirect": OPEN,
    "GET /redoc": OPEN,
    "GET /docs/assets/{name}": OPEN,
    "GET /redoc/logo-mini.svg": OPEN,
    "GET /openapi.json": OPEN,
    "GET /ui": OPEN,
    "GET /ui/": OPEN,
    "GET /ui/apikey.js": OPEN,
    "GET /ui/label": OPEN,
    "GET /ui/label/{model}": OPEN,
    "GET /metrics": ANY_KEY,
    "GET /models": ANY_KEY,
    "GET /models/{name}": ANY_KEY,
    "GET /models/{name}/metrics": ANY_KEY,
    "GET /models/{name}/drift": ANY_KEY,
    "GET /models/{name}/versions": ANY_KEY,
    "GET /models/{name}/history": ANY_KEY,
    "GET /models/{name}/openapi.json": ANY_KEY,
    "POST /models/{name}/predict": {P},
    "POST /models/{name}/predict/batch": {P},
    "POST /models/{name}/feedback": {P, L},
    "POST /models/{name}/feedback/batch": {P, L},
    "POST /models/{name}/queue/claim": {L},
    "POST /models/{name}/queue/{item_id}/label": {L},
    "POST /models/{name}/queue/{item_id}/skip": {L},
    "POST /models/{name}/queue/{item_id}/release": {L},
    "GET /models/{name}/queue/stats": {L},
    "POST /models/{name}/versions/{version}/promote": {A},
    "POST /models/{name}/rollback": {A},
    "POST /models/{name}/retrain": {A},
    "GET /jobs": {A},
    "GET /jobs/{job_id}": {A},
    "POST /jobs/{job_id}/cancel": {A},
    "GET /label-studio/{name}/health": {P, L},
    "POST /label-studio/{name}/setup": {P, L},
    "POST /label-studio/{name}/predict": {P, L},
    "POST /label-studio/{name}/webhook": {L},
    "POST /label-studio/{name}/train": {L},
}


def app_routes() -> set[str]:
    from serving.app import create_app

    app = create_app(Settings(store_url="memory://"))  # routes only: the lifespan never runs
    return {
        f"{method} {path}"
        for path, methods in route_table(app.router)
        for method in methods or ()
        if method != "HEAD"
    }


def test_every_route_has_a_decided_role():
    """A new route fails here until POLICY (and EXPECTED) say who may call it."""
    routes = app_routes()
    undecided = sorted(r for r in routes if tuple(r.split(" ", 1)) not in POLICY)
    assert undecided == [], f"add these to serving.auth.POLICY: {undecided}"
    assert sorted(routes - set(EXPECTED)) == [], "add them to EXPECTED here too"
    stale = sorted(f"{m} {p}" for m, p in POLICY if f"{m} {p}" not in routes)
    assert stale == [], f"POLICY names routes that do not exist: {stale}"


@pytest.mark.parametrize("route", sorted(EXPECTED))
def test_the_role_of_each_route(route):
    method, path = route.split(" ", 1)
    assert needed(method, path) == EXPECTED[route]


def test_an_unknown_route_needs_admin():
    assert needed("DELETE", "/models/{name}") == DEFAULT == {A}
    assert needed("HEAD", "/models") == ANY_KEY  # HEAD is GET


# Serving on the network without keys


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("myhost", False),
    ],
)
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_a_network_address_needs_keys_or_the_explicit_flag():
    key = parse_env_keys("ops:admin:k")
    assert open_without_keys(Settings(host="127.0.0.1")) is None
    refusal = open_without_keys(Settings(host="0.0.0.0"))
    assert "0.0.0.0 without API keys" in refusal and "--allow-no-auth" in refusal
    assert "onlearn keys new" in refusal
    assert open_without_keys(Settings(host="0.0.0.0", api_keys=key)) is None
    assert open_without_keys(Settings(host="0.0.0.0", allow_no_auth=True)) is None
