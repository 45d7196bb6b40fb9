"""Signed artifacts: a good round trip, and every reason to refuse one, before unpickling."""

from __future__ import annotations

import pickle

import pytest
from river import datasets

from onlearn.errors import ArtifactRejected, ConfigError
from onlearn.models import PipelineSpec, build_pipeline, dump_signed, load_signed
from onlearn.models.artifacts import FORMAT_TAG, FORMAT_VERSION

SECRET = b"s3cret-key-from-config"
HEADER = len(FORMAT_TAG) + 1 + 32

UNPICKLED: list[str] = []


def _record(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Tripwire:
    """Unpickling it runs code (as a hostile pickle would): the tests check that it never runs."""

    def __reduce__(self):
        return (_record, ("unpickled",))


@pytest.fixture(autouse=True)
def clear_tripwire():
    UNPICKLED.clear()
    yield
    UNPICKLED.clear()


def test_round_trip_of_a_trained_model():
    features = ("is_popular", "long_url", "age_of_domain")
    model = build_pipeline(
        PipelineSpec("logistic_regression"),
        task="classification",
        numeric=features,
        categorical=(),
    )
    rows = [row for _, row in zip(range(100), datasets.Phishing(), strict=False)]
    for x, y in rows:
        model.learn_one(x, y)
    blob = dump_signed(model, SECRET)
    assert blob.startswith(FORMAT_TAG + bytes([FORMAT_VERSION]))
    restored = load_signed(blob, SECRET)
    assert [restored.predict_proba_one(x) for x, _ in rows] == [
        model.predict_proba_one(x) for x, _ in rows
    ]


def test_round_trip_accepts_bytearray_and_memoryview():
    blob = dump_signed({"a": [1, 2]}, SECRET)
    assert load_signed(bytearray(blob), SECRET) == {"a": [1, 2]}
    assert load_signed(memoryview(blob), bytearray(SECRET)) == {"a": [1, 2]}


def test_the_signature_covers_the_pickle():
    blob = dump_signed(Tripwire(), SECRET)
    assert blob[HEADER:] == pickle.dumps(Tripwire(), protocol=5)
    assert load_signed(blob, SECRET) == "unpickled"
    assert UNPICKLED == ["unpickled"]


def signed_tripwire() -> bytes:
    return dump_signed(Tripwire(), SECRET)


def flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]


@pytest.mark.parametrize(
    ("make_blob", "message"),
    [
        (lambda: b"", "artifact is empty"),
        (lambda: FORMAT_TAG[:7], r"artifact is truncated \(7 bytes\)"),
        (lambda: FORMAT_TAG, "artifact is truncated after its format tag"),
        (lambda: b"GIF89a" + signed_tripwire(), "not an onlearn artifact"),
        (lambda: b"onlearn-artefact" + signed_tripwire()[16:], "not an onlearn artifact"),
        (lambda: pickle.dumps(Tripwire()), "unsigned pickle, it has no signature"),
        (
            lambda: signed_tripwire()[: len(FORMAT_TAG) + 1 + 10],
            "signature is missing or truncated",
        ),
        (lambda: signed_tripwire()[:HEADER], "has a signature but no content"),
        (
            lambda: flip(signed_tripwire(), len(FORMAT_TAG)),
            r"format version 0 is not supported \(this onlearn reads version 1\)",
        ),
        (lambda: flip(signed_tripwire(), HEADER + 5), "signature does not match"),  # payload
        (lambda: signed_tripwire() + b".", "signature does not match"),  # appended byte
        (lambda: flip(signed_tripwire(), HEADER - 1), "signature does not match"),  # signature
        (lambda: dump_signed(Tripwire(), b"another key"), "signed with another secret"),
    ],
    ids=[
        "empty",
        "short",
        "tag-only",
        "wrong-tag",
        "near-tag",
        "unsigned-pickle",
        "truncated-signature",
        "no-payload",
        "version",
        "tampered-payload",
        "appended-byte",
        "tampered-signature",
        "other-key",
    ],
)
def test_rejected_before_unpickling(make_blob, message):
    blob = make_blob()
    with pytest.raises(ArtifactRejected, match=message):
        load_signed(blob, SECRET)
    assert UNPICKLED == []


def test_secret_must_be_non_empty_bytes():
    with pytest.raises(ConfigError, match="secret is empty"):
        dump_signed(1, b"")
    with pytest.raises(ConfigError, match="secret is empty"):
        load_signed(dump_signed(1, SECRET), b"")
    with pytest.raises(TypeError, match="secret must be bytes"):
        dump_signed(1, "text secret")  # type: ignore[arg-type]


def test_blob_must_be_bytes():
    with pytest.raises(TypeError, match="an artifact is bytes"):
        load_signed("not bytes", SECRET)  # type: ignore[arg-type]
