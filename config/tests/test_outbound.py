"""The outbound guard (config/outbound.py): which URLs and addresses a tenant may point the platform at,
under which settings; and its httpx2 client, which vets each connection itself."""
from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from config.outbound import (
    OutboundUrlNotAllowed,
    address_allowed,
    address_refused,
    outbound_http_client,
    outbound_target,
    outbound_url_check,
)

PUBLIC_IP = "93.184.216.34"


@pytest.fixture
def dns(monkeypatch):
    from config.tests.fake_dns import fake_dns

    table = fake_dns(monkeypatch)
    table["public.example.test"] = PUBLIC_IP
    return table


def refused(url: str) -> str:
    with pytest.raises(OutboundUrlNotAllowed) as caught:
        outbound_url_check(url)
    assert caught.value.code == "url_not_allowed" and caught.value.status == 400
    return caught.value.message


# --- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("address, is_refused", [
    ("8.8.8.8", False),
    ("2001:4860:4860::8888", False),
    ("127.0.0.1", True),
    ("10.0.0.1", True),
    ("172.16.0.1", True),
    ("192.168.0.1", True),
    ("169.254.1.1", True),  # link-local
    ("169.254.169.254", True),  # metadata
    ("100.64.0.1", True),  # CGNAT shared space
    ("224.0.0.1", True),  # multicast
    ("240.0.0.1", True),  # reserved
    ("0.0.0.0", True),  # unspecified
    ("192.0.2.1", True),  # documentation
    ("::1", True),
    ("::", True),
    ("fe80::1", True),
    ("fc00::1", True),
    ("fd00:ec2::254", True),
    ("ff02::1", True),
    ("::ffff:127.0.0.1", True),  # IPv4-mapped
    ("::ffff:8.8.8.8", False),
    ("64:ff9b::7f00:1", True),  # NAT64 of 127.0.0.1
    ("64:ff9b::808:808", False),  # NAT64 of 8.8.8.8
    ("2002:a00:1::", True),  # 6to4 wrapping 10.0.0.1
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True),  # Teredo (its client part is no public address)
])
def test_address_classification(address, is_refused):
    assert address_refused(ipaddress.ip_address(address)) is is_refused
    assert address_allowed(ipaddress.ip_address(address)) is not is_refused  # the default settings


def test_private_switch_allows_private_addresses_but_never_metadata(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_URLS = True
    for address in ("127.0.0.1", "10.0.0.1", "::1", "::ffff:192.168.1.1"):
        assert address_allowed(ipaddress.ip_address(address)), address
    for address in ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"):
        assert not address_allowed(ipaddress.ip_address(address)), address


def test_the_old_webhook_switch_is_an_alias(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_URLS = False
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    assert address_allowed(ipaddress.ip_address("10.0.0.1"))


def test_production_allows_only_the_listed_networks(settings):
    settings.DEPLOYMENT = "production"
    settings.OUTBOUND_ALLOW_PRIVATE_URLS = True  # has no effect in production
    settings.OUTBOUND_ALLOWED_NETWORKS = ["10.20.0.0/16", "169.254.0.0/16"]
    assert address_allowed(ipaddress.ip_address("10.20.3.4"))
    assert address_allowed(ipaddress.ip_address("::ffff:10.20.3.4"))
    assert address_allowed(ipaddress.ip_address(PUBLIC_IP))
    assert not address_allowed(ipaddress.ip_address("10.21.0.1"))
    assert not address_allowed(ipaddress.ip_address("127.0.0.1"))  # loopback: only when listed
    assert not address_allowed(ipaddress.ip_address("169.254.169.254"))  # metadata: even when listed
    assert address_allowed(ipaddress.ip_address("169.254.10.10"))


# --- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/v1",
    "http://localhost:8000/v1",
    "http://[::1]/v1",
    "http://[::ffff:127.0.0.1]/v1",
    "http://[::ffff:7f00:1]/v1",
    "http://[64:ff9b::7f00:1]/v1",
    "http://[fe80::1%25eth0]/v1",
    "http://0.0.0.0/v1",
    "http://10.0.0.1/v1",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/",
    "http://100.64.0.1/v1",
    # numeric spellings of 127.0.0.1 that inet_aton reads
    "http://2130706433/v1",
    "http://0x7f000001/v1",
    "http://0x7f.1/v1",
    "http://017700000001/v1",
    "http://0177.0.0.1/v1",
    "http://127.1/v1",
    "http://127.0.0.1./v1",
    # forms
    "ftp://public.example.test/v1",
    "file:///etc/passwd",
    "http://user:secret@public.example.test/v1",
    "http://token@public.example.test/v1",
    "http:///v1",
    "http://public.example.test:99999/v1",
    "http://unresolvable.invalid/v1",
])
def test_refused_urls(url, dns):
    refused(url)


def test_a_name_is_refused_when_any_of_its_addresses_is(monkeypatch):
    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_IP, port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert "10.1.2.3" in refused("https://split.example.test/v1")


def test_public_urls_pass_with_their_parts(dns):
    dns["v6.example.test"] = "2606:2800:220:1:248:1893:25c8:1946"
    target = outbound_target("https://public.example.test/v1")
    assert (target.scheme, target.host, target.port, target.addresses) == (
        "https", "public.example.test", 443, (PUBLIC_IP,))
    assert outbound_target("http://v6.example.test:8443/x").port == 8443
    outbound_url_check(f"http://{PUBLIC_IP}/v1")


def test_international_names_are_checked_in_their_ascii_form(dns):
    dns["xn--bcher-kva.example.test"] = PUBLIC_IP
    assert outbound_target("https://bücher.example.test/v1").host == "xn--bcher-kva.example.test"


# --- the httpx2 client -------------------------------------------------------------------------


def test_client_refuses_a_loopback_address_without_connecting(listener):
    with outbound_http_client(timeout=2) as client, pytest.raises(OutboundUrlNotAllowed):
        client.get(f"http://127.0.0.1:{listener.port}/")
    assert listener.seen() == 0


def test_client_refuses_a_name_rebound_to_the_loopback_at_connect_time(listener, dns):
    dns["rebound.example.test"] = "127.0.0.1"
    with outbound_http_client(timeout=2) as client, pytest.raises(OutboundUrlNotAllowed, match="127.0.0.1"):
        client.get(f"http://rebound.example.test:{listener.port}/")
    assert listener.seen() == 0


def test_client_connects_when_allowed_and_keeps_the_host_name(settings, dns):
    """The allowed path reaches the server: the refusals above are the guard's, not a broken client."""
    hosts = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hosts.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    settings.OUTBOUND_ALLOW_PRIVATE_URLS = True
    dns["models.example.test"] = "127.0.0.1"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        with outbound_http_client(timeout=5) as client:
            response = client.get(f"http://models.example.test:{server.server_address[1]}/v1/models")
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 204
    assert hosts == [f"models.example.test:{server.server_address[1]}"]


def test_client_takes_no_proxy_from_the_environment(monkeypatch, listener):
    """A proxy would make the connection for us, to an address nobody vetted."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{listener.port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.port}")
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: (_ for _ in ()).throw(
        socket.gaierror(socket.EAI_NONAME, "no DNS in this test")))
    with outbound_http_client(timeout=2) as client, pytest.raises(OutboundUrlNotAllowed, match="cannot be resolved"):
        client.get("http://public.example.test/")
    assert listener.seen() == 0
