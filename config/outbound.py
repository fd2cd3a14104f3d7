"""The one guard on requests to addresses a tenant chose: webhook receivers, model servers (provider base URLs).

A URL is vetted when it is saved and again when a connection opens: the host is resolved, every address it
resolves to must be allowed, and the connection goes to one of those vetted addresses, never to a second
lookup (a name rebound to 127.0.0.1 between the check and the connect is caught). Redirects are not
followed: a redirect would be a new, unvetted URL.

Allowed: public unicast addresses; addresses inside OUTBOUND_ALLOWED_NETWORKS (CIDRs, any mode); and, with
OUTBOUND_ALLOW_PRIVATE_URLS on outside production, any other address. Cloud metadata addresses are refused
whatever the settings say: a listed 169.254.0.0/16 must not hand out a node's credentials.

Two ways to connect through it: `PinnedHTTPConnection`/`PinnedHTTPSConnection` (http.client, the webhooks)
and `outbound_http_client()` (an httpx2 client whose every TCP connection is vetted, for SDKs such as openai).
"""
from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from config.error_codes import KernelErrors
from config.errors import DomainError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 gateways route 64:ff9b::a.b.c.d to the IPv4 address a.b.c.d.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Instance metadata services (AWS, GCP, Azure, OpenStack: 169.254.169.254; AWS over IPv6; Alibaba Cloud).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254",
                                                                 "100.100.100.200"))
# A host made only of numeric labels (decimal, 0x hex, 0-led octal): inet_aton reads "2130706433",
# "0x7f.1" and "017700000001" as 127.0.0.1. Only the canonical dotted quad is accepted as a number.
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


class OutboundUrlNotAllowed(DomainError):
    """The URL is not plain http(s), carries credentials, or reaches an address that is not allowed."""

    code = KernelErrors.URL_NOT_ALLOWED


@dataclass(frozen=True)
class OutboundTarget:
    scheme: str
    host: str  # ASCII (IDNA), as the Host header and the TLS name carry it
    port: int
    addresses: tuple[str, ...]  # every address the host resolved to, all of them vetted


# --- addresses ---------------------------------------------------------------------------------


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, NAT64), if any."""
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refused(address: Address) -> bool:
    """True for any address that is not a public unicast one, looking through IPv6 wrappers of IPv4
    (mapped, NAT64, 6to4, Teredo)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return address_refused(embedded)
    if address.version == 6:
        if address.sixtofour is not None and address_refused(address.sixtofour):
            return True
        if address.teredo is not None and any(address_refused(part) for part in address.teredo):
            return True
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global  # shared space (100.64/10), documentation and benchmark ranges ...
    )


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    value = getattr(settings, "OUTBOUND_ALLOWED_NETWORKS", []) or []
    if isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    return [ipaddress.ip_network(item, strict=False) for item in value]


def _private_allowed() -> bool:
    # WEBHOOK_ALLOW_PRIVATE_URLS is the deprecated name of the same switch. Never in production, where
    # only OUTBOUND_ALLOWED_NETWORKS opens non-public addresses (settings refuse to start otherwise).
    if getattr(settings, "DEPLOYMENT", "embedded") == "production":
        return False
    return bool(getattr(settings, "OUTBOUND_ALLOW_PRIVATE_URLS", False)
                or getattr(settings, "WEBHOOK_ALLOW_PRIVATE_URLS", False))


def address_allowed(address: Address) -> bool:
    """May a tenant-chosen URL reach this address, under the current settings?"""
    embedded = _embedded_ipv4(address)
    if address in METADATA_ADDRESSES or (embedded is not None and embedded in METADATA_ADDRESSES):
        return False
    if not address_refused(address):
        return True
    for network in _allowed_networks():
        if network.version == address.version and address in network:
            return True
        if embedded is not None and network.version == 4 and embedded in network:
            return True
    return _private_allowed()


# --- URLs --------------------------------------------------------------------------------------


def _host_check(host: str, *, what: str, error: type[OutboundUrlNotAllowed]) -> str:
    """The host in ASCII; refuses numeric forms other than the canonical ones, and zone ids."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if literal.version == 4 and str(literal) != host:
            raise error(f"The {what} host {host!r} is not a canonical IP address.")
        return host
    if "%" in host or ":" in host:
        raise error(f"The {what} host {host!r} is not a valid host name.")
    labels = host.rstrip(".").split(".")
    if all(_NUMERIC_LABEL.match(label) for label in labels):
        raise error(f"The {what} host {host!r} is a number in a non-canonical form; write the address as a.b.c.d.")
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise error(f"The {what} host {host!r} is not a valid host name.") from None


def outbound_url_parse(url: str, *, what: str = "URL",
                       error: type[OutboundUrlNotAllowed] = OutboundUrlNotAllowed) -> tuple[str, str, int]:
    """(scheme, ASCII host, port) of an http(s) URL without credentials; no name resolution."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise error(f"The {what} is malformed.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise error(f"A {what} must use http or https.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise error(f"A {what} must not carry credentials in it.")
    host = parts.hostname
    if not host:
        raise error(f"The {what} has no host.")
    host = _host_check(host, what=what, error=error)
    return scheme, host, port or (443 if scheme == "https" else 80)


def outbound_addresses(host: str, port: int, *, what: str = "URL",
                       error: type[OutboundUrlNotAllowed] = OutboundUrlNotAllowed) -> tuple[str, ...]:
    """Every address `host` resolves to, when all of them are allowed; raises `error` otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise error(f"The {what} host {host!r} cannot be resolved.") from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise error(f"The {what} host {host!r} cannot be resolved.")
    for address in addresses:
        try:
            allowed = address_allowed(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            allowed = False
        if not allowed:
            raise error(f"The {what} host {host!r} resolves to {address}, a private or reserved address.")
    return addresses


def outbound_target(url: str, *, what: str = "URL",
                    error: type[OutboundUrlNotAllowed] = OutboundUrlNotAllowed) -> OutboundTarget:
    """The URL's parts and its vetted addresses. Raises `error` (an OutboundUrlNotAllowed)."""
    scheme, host, port = outbound_url_parse(url, what=what, error=error)
    return OutboundTarget(scheme, host, port, outbound_addresses(host, port, what=what, error=error))


def outbound_url_check(url: str, *, what: str = "URL",
                       error: type[OutboundUrlNotAllowed] = OutboundUrlNotAllowed) -> None:
    """The save-time check: refuse what a connection would refuse now."""
    outbound_target(url, what=what, error=error)


# --- http.client: connections pinned to a vetted address ---------------------------------------


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address vetted beforehand, whatever the host name resolves to now."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The same over TLS: certificate and SNI are checked against the host name, not the address."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


# --- httpx2: a client whose every connection is vetted -----------------------------------------


def outbound_http_client(*, timeout: float, what: str = "URL"):
    """An httpx2.Client for SDKs (openai): each TCP connection resolves its host, vets every address
    and connects to a vetted one (Host header and TLS name stay the host name); redirects are not
    followed; no proxy or other setting is taken from the environment (a proxy would connect for us,
    unvetted)."""
    import httpcore2
    import httpx2

    class VettedBackend(httpcore2.SyncBackend):
        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            host = _host_check(host, what=what, error=OutboundUrlNotAllowed)
            addresses = outbound_addresses(host, port, what=what)
            for index, address in enumerate(addresses):
                try:
                    return super().connect_tcp(address, port, timeout, local_address, socket_options)
                except httpcore2.ConnectError:
                    if index == len(addresses) - 1:
                        raise
            raise httpcore2.ConnectError("no address to connect to")

    class VettedTransport(httpx2.HTTPTransport):
        def __init__(self):
            super().__init__(trust_env=False)
            # HTTPTransport takes no network backend: its pool is replaced by one with ours (the pool is
            # all the transport holds; a test connects through it, so an upgrade that breaks this fails).
            self._pool.close()
            self._pool = httpcore2.ConnectionPool(
                ssl_context=httpx2.create_ssl_context(trust_env=False), network_backend=VettedBackend())

    return httpx2.Client(transport=VettedTransport(), timeout=timeout, follow_redirects=False, trust_env=False)
