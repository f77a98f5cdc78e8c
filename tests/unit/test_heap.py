"""The collector settings a long-running loop starts with."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from reconciler.engine.heap import YOUNG_COLLECTION_EVERY, settle_for_the_loop


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_the_start_is_frozen_and_young_collections_spaced_out(collector: None) -> None:
    _, middle, old = gc.get_threshold()
    before = gc.get_freeze_count()
    settle_for_the_loop()
    assert gc.get_freeze_count() > before
    assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, middle, old)

    class Node:
        def __init__(self) -> None:
            self.me = self

    # Cyclic garbage made afterwards is still collected.
    Node()
    assert gc.collect() >= 1
