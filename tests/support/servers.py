"""Talking to servers a test starts: a free port to give them, and whether they answer."""

from __future__ import annotations

import socket
import urllib.request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 within two seconds."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 (a local URL)
            return bool(reply.status == 200)
    except OSError:
        return False
