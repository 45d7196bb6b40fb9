"""The serve lock: one ``onlearn serve`` per SQLite file, none needed on memory:// or Redis.

Real files and real ``flock`` locks; the processes that share a file, and a crashed holder, are
in ``tests/e2e/test_serve_lock.py``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from onlearn.errors import OnlearnError
from onlearn.store import serve_lock
from onlearn.store.sqlite.lock import StoreInUse, serve_lock_path


def test_a_second_holder_of_a_sqlite_file_is_refused_naming_the_first_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "data" / "onlearn.db"  # neither the file nor its directory exist yet
    with serve_lock("sqlite:///data/onlearn.db", serving="http://127.0.0.1:8000"):
        holder = json.loads(Path(serve_lock_path(f"sqlite:///{db}")).read_text())
        assert holder["pid"] == os.getpid() and holder["serving"] == "http://127.0.0.1:8000"
        # The same file under another spelling of its URL: flock locks conflict even within one
        # process, as long as each opened the file itself.
        with pytest.raises(StoreInUse) as refused:
            with serve_lock(f"sqlite:///{db}?busy_timeout_ms=10", serving="http://x:1"):
                pytest.fail("two holders of one serve lock")
        message = str(refused.value)
        assert isinstance(refused.value, OnlearnError)  # the CLI prints it as one error line
        for words in (
            str(db),
            f"pid {os.getpid()}",
            "http://127.0.0.1:8000",
            f"kill {os.getpid()}",
        ):
            assert words in message, (words, message)
        for fix in ("--store", "--port", "--workers N", "onlearn worker", "onlearn monitor"):
            assert fix in message, (fix, message)
    # Released at the end of the block: the next server takes it.
    with serve_lock(f"sqlite:///{db}", serving="http://127.0.0.1:8001"):
        holder = json.loads(Path(serve_lock_path(f"sqlite:///{db}")).read_text())
        assert holder["serving"] == "http://127.0.0.1:8001"


def test_another_database_in_the_same_directory_has_its_own_lock(tmp_path: Path):
    with serve_lock(f"sqlite:///{tmp_path}/a.db"):
        with serve_lock(f"sqlite:///{tmp_path}/b.db"):
            pass


@pytest.mark.parametrize("url", ["memory://", "redis://127.0.0.1:1/0"])
def test_memory_and_redis_stores_take_no_serve_lock(url: str):
    # memory:// lives in one process; many servers on one Redis is how onlearn scales out. No
    # connection is made: the port above has nothing listening.
    with serve_lock(url, serving="http://127.0.0.1:8000"):
        with serve_lock(url, serving="http://127.0.0.1:8001"):
            pass
