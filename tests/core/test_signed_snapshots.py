"""Snapshots in a real store are signed: one altered, unsigned or signed with another secret is
refused before anything is unpickled, and the engine says which and what to do."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from onlearn.engine import Engine, FeedbackItem
from onlearn.errors import ArtifactRejected
from onlearn.models import dump_signed
from onlearn.store import open_store
from tests.core.conftest import phishing_settings, phishing_stream


class Tripwire:
    """Unpickling it creates a file: proof that a refused artifact was unpickled anyway."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 0x01])


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (lambda blob, marker: flip_last_byte(blob), "signature does not match"),
        (lambda blob, marker: pickle.dumps(Tripwire(marker)), "unsigned pickle"),
        (
            lambda blob, marker: dump_signed(Tripwire(marker), b"a guessed secret"),
            "signed with another secret",
        ),
    ],
    ids=["altered", "unsigned", "other-secret"],
)
def test_a_forged_snapshot_in_the_store_is_refused_at_start(sqlite_url, tmp_path, forge, message):
    settings = phishing_settings(sqlite_url)
    with Engine.from_settings(settings) as engine:  # leaves a shutdown snapshot
        for x, y in phishing_stream(50):
            engine.feedback_one("phishing", FeedbackItem(y, features=x))
    marker = tmp_path / "unpickled"
    with open_store(sqlite_url) as store:
        snapshot = store.registry.latest_snapshot("phishing", "v1")
        assert snapshot is not None and snapshot.seq == 50
        store.registry.put_snapshot(
            dataclasses.replace(snapshot, artifact=forge(snapshot.artifact, marker))
        )
    with pytest.raises(ArtifactRejected, match=message):
        Engine.from_settings(settings).start()
    assert not marker.exists()


def test_a_snapshot_is_refused_by_a_server_with_another_secret(sqlite_url):
    settings = phishing_settings(sqlite_url)
    with Engine.from_settings(settings) as engine:
        for x, y in phishing_stream(50):
            engine.feedback_one("phishing", FeedbackItem(y, features=x))
    other = dataclasses.replace(settings, secret_key="another secret")
    with pytest.raises(ArtifactRejected, match="signed with another secret"):
        Engine.from_settings(other).start()
