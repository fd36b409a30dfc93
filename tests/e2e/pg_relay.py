"""A TCP relay in front of PostgreSQL that a test can cut off: a database outage without stopping the server.

Clients connect to ``127.0.0.1:<relay.port>``; every connection is piped to the real server. ``pause()`` closes the
live connections and stops listening, so new connections are refused (what a client sees when the database host is
gone); ``resume()`` listens on the same port again.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import NamedTuple

from sqlalchemy import make_url

logger = logging.getLogger(__name__)

_CHUNK = 65536


class PgRelay:
    """A threaded localhost relay to ``target_host:target_port`` that can be paused (an outage) and resumed.

    Args:
        target_host: the PostgreSQL server's host.
        target_port: its port.

    Attributes:
        port: the local port clients connect to (fixed for the relay's lifetime, across pauses).
        accepted: connections relayed so far (a test can see that a client really went through the relay).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.accepted = 0
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._paused = False
        self.port = self._listen(0)

    @property
    def paused(self) -> bool:
        """Whether the relay is in an outage."""
        return self._paused

    def _listen(self, port: int) -> int:
        """Open the listening socket on ``port`` (0: any free one) and start accepting; return the port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Rebinding the same port on resume must not wait for the closed connections' TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="pg-relay-accept", daemon=True).start()
        return int(listener.getsockname()[1])

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed by pause() or close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError as exc:
                logger.warning("pg relay: upstream %s:%d unreachable: %s", *self.target, exc)
                client.close()
                continue
            with self._lock:
                if self._paused:  # paused between accept() and here: this connection is part of the outage
                    client.close()
                    upstream.close()
                    continue
                self._live.update((client, upstream))
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), name="pg-relay-pipe", daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes one way until either side closes, then close both (the other pipe thread then ends too)."""
        try:
            while chunk := source.recv(_CHUNK):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self._lock:
                self._live.discard(sock)
            # shutdown wakes the other pipe thread blocked in recv() on this socket.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def pause(self) -> None:
        """Start an outage: stop listening (new connections are refused) and cut every live connection."""
        with self._lock:
            self._paused = True
            listener, self._listener = self._listener, None
            live = list(self._live)
        if listener is not None:
            # shutdown, not only close: a close leaves the accept() blocked in the other thread listening on.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self._drop(*live)

    def resume(self) -> None:
        """End the outage: listen on the same port again."""
        with self._lock:
            if not self._paused:
                return
            self._paused = False
        self._listen(self.port)

    def close(self) -> None:
        """Stop relaying for good."""
        self.pause()


class RelayedDatabase(NamedTuple):
    """A fresh PostgreSQL schema reached two ways: through ``relay`` (``url``, cut by an outage) and ``direct_url``."""

    relay: PgRelay
    url: str
    direct_url: str


def through_relay(url: str, relay: PgRelay) -> str:
    """``url`` with its host and port replaced by the relay's."""
    return make_url(url).set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
