"""The embedded broker's hand-over: a consumer never reads a message that is half written."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

from ingest import undecodable

QUEUE = "collect"
WRITERS = 2
MESSAGES_PER_WRITER = 1_500
READERS = 2
# About a chunk message's size: a write takes long enough for a reader to meet it half done.
PADDING = "x" * 32_000


def connect(transport: str, folder: Path) -> Connection:
    return Connection(
        "filesystem://",
        transport=transport,
        transport_options={
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        },
    )


def race_puts_against_gets(transport: str, folder: Path) -> tuple[list[Any], list[BaseException]]:
    """Writers ``_put`` numbered messages while readers ``_get`` them; returns what was read
    and what the readers raised (a message read half written does not decode)."""
    (folder / "queue").mkdir()
    total = WRITERS * MESSAGES_PER_WRITER
    received: list[Any] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 120

    def write(first: int) -> None:
        with connect(transport, folder) as connection:
            channel: Any = connection.default_channel
            for number in range(first, first + MESSAGES_PER_WRITER):
                channel._put(QUEUE, {"number": number, "padding": PADDING})

    def read() -> None:
        with connect(transport, folder) as connection:
            channel: Any = connection.default_channel
            # Each message is taken by exactly one reader: read or failed, it is gone.
            while len(received) + len(failures) < total and time.monotonic() < deadline:
                try:
                    message = channel._get(QUEUE)
                except Empty:
                    continue
                except Exception as error:  # noqa: BLE001  (what the test looks for)
                    with lock:
                        failures.append(error)
                    continue
                with lock:
                    received.append(message)

    threads = [
        threading.Thread(target=write, args=(index * MESSAGES_PER_WRITER,))
        for index in range(WRITERS)
    ] + [threading.Thread(target=read) for _ in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return received, failures


@pytest.fixture
def taken_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kombu moves a taken message to the temp directory: keep it on the queue's filesystem,
    # where a move is a rename, as it is in the embedded default's var/ on most machines.
    taken = tmp_path / "taken"
    taken.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(taken))


def test_racing_puts_and_gets_never_read_a_partial_message(
    tmp_path: Path, taken_folder: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_aside: list[tuple[bytes, str]] = []  # what the transport found undecodable
    monkeypatch.setattr(undecodable, "set_aside", lambda *letter: set_aside.append(letter))

    received, failures = race_puts_against_gets("ingest.filesystem_broker:Transport", tmp_path)

    assert failures == []
    assert set_aside == []
    total = WRITERS * MESSAGES_PER_WRITER
    assert sorted(message["number"] for message in received) == list(range(total))
    assert all(message["padding"] == PADDING for message in received)
    assert list((tmp_path / "queue").iterdir()) == []  # no unfinished file left behind


def test_a_connection_to_the_folder_logs_no_hostname_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "queue").mkdir()
    with caplog.at_level("WARNING"), connect("ingest.filesystem_broker:Transport", tmp_path) as c:
        channel: Any = c.default_channel
        channel._put(QUEUE, {"number": 1})
        assert c.info()["hostname"] is None

    assert [record.getMessage() for record in caplog.records] == []
