"""The Lua scripts of the ports, kept as package data in ``lua/`` beside the modules.

A script is ``lua/<port>_<name>.lua`` and only the port module ``<port>.py`` registers it
(``tests/store/test_redis_scripts.py`` checks both). A script cannot include another file, so the
functions several scripts share (``lua/lib/``) are put in front of its body here, and Redis runs
the whole text as one script. Each file opens with a comment saying what it does, its KEYS and
ARGV, and which race it prevents.
"""

from __future__ import annotations

import functools
from importlib import resources

import redis
from redis.commands.core import Script

__all__ = ["register", "source"]


@functools.cache
def _read(path: str) -> str:
    return resources.files(__package__).joinpath("lua", path).read_text(encoding="utf-8")


def source(name: str, *libraries: str) -> str:
    """The text of script ``lua/<name>.lua``, after the functions of ``lua/lib/<library>.lua``.

    >>> "local function quote" in source("label_queue_peek", "quote")
    True
    """
    return "".join([*(_read(f"lib/{library}.lua") for library in libraries), _read(f"{name}.lua")])


def register(client: redis.Redis, name: str, *libraries: str) -> Script:
    """Register a script with the client; it runs by SHA, loaded again after ``NOSCRIPT``."""
    return client.register_script(source(name, *libraries))
