"""Django's PostgreSQL backend, with a connection health check that costs no round trip.

With ``CONN_HEALTH_CHECKS`` Django sends ``SELECT 1`` before the first query of every request
on a kept connection, so that a connection the server has ended (a restart, a terminated
backend, an idle timeout) is replaced before the request fails on it. That round trip is one
of the two or three a read endpoint makes: sampled in a gunicorn worker under load, the
telemetry page spent about as long waiting on it as on its own two queries.

A server that ends a connection says so: it sends its error and closes the socket, which then
reads as ready. So the socket is polled, which is one system call: a connection whose socket
has nothing to say is taken as usable without asking, and one that has something to say
(the server's farewell, or a notice between queries) still gets Django's ``SELECT 1``, which
decides. A connection that died without a word (a host lost with no reset) fails its next
query instead, as it would fail the ``SELECT 1``, and Django replaces it at the end of that
request. After a request whose queries raised, Django's own check runs as before: an error
is rare, and the connection it came from is worth asking.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed:
            return False
        if self.errors_occurred:
            return bool(super().is_usable())
        # poll, not select: a worker holding a thousand client sockets may number this one
        # above select's limit.
        poller = select.poll()
        try:
            poller.register(self.connection.fileno(), select.POLLIN)
            events = poller.poll(0)
        except (OSError, ValueError):
            return False
        return not events or bool(super().is_usable())
