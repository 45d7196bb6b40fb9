"""Versions a test builds by hand, outside any store."""

from __future__ import annotations

from dataclasses import replace

from onlearn.models import sign_spec
from onlearn.records import VersionInfo
from onlearn.snapshots import fresh_state

_KEY = b"a key of the test's own"


def trusted_fresh_state(info: VersionInfo):
    """The untrained state of a version whose spec the test itself wrote (or read from a store it
    made): signed here, since :func:`onlearn.snapshots.fresh_state` builds signed specs only."""
    signed = replace(info, spec_signature=sign_spec(info.model, info.spec, _KEY))
    return fresh_state(signed, _KEY)
