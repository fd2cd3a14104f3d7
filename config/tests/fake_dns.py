"""Name resolution a test controls: names in the table resolve to the address the test gives (DNS is the
outside world here, so it is the one thing faked); every other name resolves as usual."""
from __future__ import annotations

import socket


def fake_dns(monkeypatch) -> dict[str, str]:
    """Patch socket.getaddrinfo; returns the table (name -> address) the test fills and may change later."""
    table: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            family = socket.AF_INET6 if ":" in table[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (table[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table
