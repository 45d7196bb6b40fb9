"""What the app does once started, in process."""

from __future__ import annotations

import asyncio
import gc

from onlearn.config import Settings
from serving.app import create_app


def test_startup_freezes_what_it_loaded_out_of_the_collectors_sight():
    # Full collections walked everything start-up had loaded and found nothing: 70-90 ms pauses
    # every ~20 s under load. Frozen objects are not walked.
    app = create_app(Settings(store_url="memory://"))

    async def started() -> int:
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count()

    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        assert asyncio.run(started()) > 10_000
    finally:
        gc.unfreeze()
