"""The generation id of a store: who a process is talking to, and whether it still is.

A store gets a random id when it is created (SQLite: the ``generation`` row of the ``meta``
table; Redis: the ``<prefix>:generation`` key; memory: one per store object); a store made by an
earlier onlearn gets one the first time this version opens it. A process reads it once, at open,
into :class:`Generation`. Every log append checks it in the same step as the append (the SQLite
write transaction, the Lua script), the follower checks it before applying what it read, and
readiness reads it. A different or missing id means the store was emptied (a Redis restarted
without its data, FLUSHALL) or replaced (a fresh file, another database): this process's models
hold events that store does not have, and whatever it appended next would reuse their seqs.

An older copy of the same store (a restored backup, a Redis that lost its last second of writes)
keeps its id; it shows as a log whose head is below the seq a model of this process applied,
seen by an append, a read or the periodic check (:meth:`Generation.went_back`).

Either way the process stops for good (``lost``): no event is applied, appended or snapshotted
any more, feedback is refused with 503 and readiness fails until the process is restarted
against the right store (or the store is restored from its backup).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from onlearn.errors import StoreReplaced

log = logging.getLogger(__name__)

__all__ = ["Generation", "new_generation_id"]


def new_generation_id() -> str:
    """A fresh random generation id (128 bits, hex)."""
    return secrets.token_hex(16)


class Generation:
    """The generation id this process read at open, and what it found since.

    ``read`` reads the store's current id (None when it has none: an emptied Redis). ``where``
    names the store in messages.
    """

    def __init__(self, id: str, read: Callable[[], str | None], where: str) -> None:
        self.id = id
        self._read = read
        self.where = where
        self.lost: str | None = None  # why this process stopped trusting the store, for good

    @classmethod
    def fixed(cls, where: str = "the memory store") -> Generation:
        """A generation that cannot change: a store only this process sees (memory)."""
        gid = new_generation_id()
        return cls(gid, lambda: gid, where)

    def refuse(self) -> None:
        """Raise :class:`StoreReplaced` once the store was found changed; nothing else."""
        if self.lost is not None:
            raise StoreReplaced(self.lost)

    def check(self) -> None:
        """Read the store's id now; raise :class:`StoreReplaced` when it is not the one read at
        open (or the store was found changed before)."""
        self.refuse()
        found = self._read()
        if found != self.id:
            raise self.mismatch(found)

    def mismatch(self, found: str | None) -> StoreReplaced:
        """Note that the store holds generation ``found`` (None: none); the error to raise."""
        what = (
            "has no generation id any more (emptied: a Redis restarted without its data, or "
            "FLUSHALL)"
            if not found
            else f"holds generation {found} (a new or another store at the same place)"
        )
        return self._lose(
            f"{self.where} is not the one this process opened: it had generation "
            f"{self.id} and now {what}"
        )

    def went_back(self, model: str, applied: int, head: int) -> StoreReplaced:
        """Note that ``model``'s log ends at ``head``, below the seq ``applied`` here."""
        return self._lose(
            f"{self.where}: model {model!r} has applied the log up to seq {applied} in "
            f"this process, but the store's log ends at {head} (an older copy of the store, or "
            "one that lost its last writes)"
        )

    def _lose(self, what: str) -> StoreReplaced:
        if self.lost is None:
            self.lost = (
                f"{what}. This process stopped applying, appending and snapshotting so that "
                "nothing is learned on top of the wrong log; labels are refused. Restart it "
                "against the right store, or restore the store from its backup and restart it"
            )
            log.error("%s", self.lost)
        return StoreReplaced(self.lost)
