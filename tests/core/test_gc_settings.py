"""The served app tunes the cyclic garbage collector as its settings say."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldwatch.app import create_app
from fieldwatch.core.settings import Settings
from fieldwatch.db import migrate
from fieldwatch.runtime import build_runtime


@pytest.fixture
def gc_state() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


@pytest.mark.usefixtures("gc_state")
async def test_the_young_generation_threshold_is_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        env="test", data_dir=tmp_path, jwt_secret="x" * 40, gc_young_threshold=1234,
        mqtt_embedded=False,
    )  # fmt: skip
    schema = build_runtime(settings)  # the served app's runtime starts on a migrated database
    await migrate.upgrade(schema.engine)
    await schema.close()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == 1234
        assert gc.get_freeze_count() > 0  # the start-up objects are out of the passes
