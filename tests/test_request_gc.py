"""Garbage collection paced by requests (api.request_gc)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.signals import request_started

from api.request_gc import RequestPacedCollector, collector_paused, generation_due


class _Node:
    """An object that can be put in a reference cycle and watched through a weak reference."""

    def __init__(self) -> None:
        self.partner: _Node | None = None


@pytest.fixture
def automatic_collection_off() -> Iterator[None]:
    """No automatic collection during the test: only the code under test may collect."""
    with collector_paused():
        yield


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*saved)


@pytest.fixture(name="collections")
def _record_collections() -> Iterator[list[int]]:
    """The generation of each collection that runs during the test, in order."""
    collected: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            collected.append(info["generation"])

    gc.callbacks.append(record)
    try:
        yield collected
    finally:
        gc.callbacks.remove(record)


# Sending request_started also runs Django's connection upkeep, which may touch the database.
@pytest.mark.django_db
@pytest.mark.usefixtures("automatic_collection_off")
def test_a_request_start_frees_the_cycles_earlier_requests_left() -> None:
    first, second = _Node(), _Node()
    first.partner, second.partner = second, first
    watched = weakref.ref(first)
    del first, second
    assert watched() is not None  # a cycle: reference counting alone never frees it

    request_started.send(sender=None, environ={})

    assert watched() is None


@pytest.mark.usefixtures("automatic_collection_off")
def test_the_first_finished_request_freezes_the_heap_and_later_ones_do_not(
    collections: list[int],
) -> None:
    pacer = RequestPacedCollector()
    frozen_before = gc.get_freeze_count()
    try:
        pacer.freeze_once()
        assert collections == [2]  # one full collection, so that no garbage is frozen
        assert gc.get_freeze_count() > frozen_before
        pacer.freeze_once()
        assert collections == [2]
    finally:
        gc.unfreeze()


@pytest.mark.django_db
@pytest.mark.usefixtures("automatic_collection_off", "thresholds")
def test_an_older_generation_is_collected_once_its_count_is_due(
    collections: list[int],
) -> None:
    gc.collect()  # every count back to zero
    gc.set_threshold(700, 10, 10)
    gc.collect(0)  # one young collection counts towards the middle generation
    assert generation_due() == 0
    gc.set_threshold(700, 0, 10)
    assert generation_due() == 1

    collections.clear()
    request_started.send(sender=None, environ={})

    assert collections == [1]
