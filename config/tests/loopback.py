"""A loopback TCP listener for tests that must prove no connection was made (the outbound guard's)."""
from __future__ import annotations

import socket
import threading


class Listener:
    """A TCP listener on the loopback that counts the connections made to it (and answers none)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.02)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self._accept()

    def _accept(self) -> bool:
        try:
            connection, _ = self.sock.accept()
        except (TimeoutError, BlockingIOError, OSError):
            return False
        self.connections += 1
        connection.close()
        return True

    def seen(self) -> int:
        """Connections so far, including any still waiting in the backlog."""
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.setblocking(False)
        while self._accept():
            pass
        return self.connections

    def close(self):
        self.seen()
        self.sock.close()
