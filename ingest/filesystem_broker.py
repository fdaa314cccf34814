"""The embedded broker: kombu's filesystem transport, with a hand-over no reader sees half done.

kombu 5.7's filesystem transport publishes a message by creating its file in the queue
folder, then locking and writing it; a consumer lists the folder, moves a file away and reads
it without taking that lock. So a consumer can take a file between its creation and its
write, read it empty or half written, and fail to decode it: the worker stopped with
"Unrecoverable error: JSONDecodeError". Here a message is written whole under a temporary
name in the same folder, one the consumer's listing skips (it takes only names ending in
``.<queue>.msg``), then renamed into place: a rename within one filesystem is atomic, so a
consumer finds either no file or the complete message. A message that still cannot be
decoded (a file truncated by a crash, or put there by hand) becomes a dead letter
(``ingest.undecodable``).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

from ingest.undecodable import DeadLetteringChannel

UNFINISHED_SUFFIX = ".part"


class Channel(DeadLetteringChannel, filesystem.Channel):
    # The ignore is the stubs' own: their filesystem channel widens the virtual one's _put.
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        # kombu's naming: consumers take names in sorted order, so the time leads.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, name)
        unfinished = path + UNFINISHED_SUFFIX
        try:
            with open(unfinished, "wb") as file:
                file.write(dumps(payload).encode())
            os.replace(unfinished, path)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.remove(unfinished)
            raise ChannelError(f"cannot add a message to {self.data_folder_out}") from error


class Transport(filesystem.Transport):
    Channel = Channel

    # A folder has no host. kombu's default for virtual transports names one, and every
    # connection then logs "No hostname was supplied. Reverting to default 'localhost'",
    # a warning the user of the embedded broker can do nothing about.
    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {}
