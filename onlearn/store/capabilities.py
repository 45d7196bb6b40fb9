"""What a store backend can do, declared by its entry in the scheme table (``onlearn.store``).

Callers ask these instead of reading the URL: whether other processes see the store, whether a
call may wait on a socket, whether it is one file on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Capabilities"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do.

    >>> Capabilities(shared=True, networked=False, local_file=True).shared
    True
    """

    # Other processes open the same store and see what this one writes (False: memory://, which
    # lives in one process). Followers poll it; a predict waits briefly for a prediction record
    # another process is still writing.
    shared: bool
    # A call goes over a socket and may wait out its timeout (Redis); a local store answers a
    # read in microseconds (memory, or an SQLite file, whose readers do not wait for its writer
    # in WAL mode). The engine reads a networked store off the event loop; the worker and the
    # monitor run beside a networked store as processes of their own unless asked otherwise.
    networked: bool
    # The store is one file on this machine, shared by the processes beside it: one
    # ``onlearn serve`` holds it (the serve lock), whose ``--workers N`` and sidecar worker and
    # monitor share it, and the signing key can be kept in a file beside it.
    local_file: bool
