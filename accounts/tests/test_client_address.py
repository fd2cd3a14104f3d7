"""Client addresses: X-Forwarded-For counts only through TRUSTED_PROXY_COUNT proxies, so a client
cannot escape its sign-in lock or rate-limit bucket by naming another address. Checked against the
real ASGI server started the way `manage.py runplatform` starts it, and in every deployment file."""
from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager

import pytest

from config.client_address import UVICORN_ARGS, TrustedProxyMiddleware, forwarded_client
from generation.management.commands.runplatform import web_command
from generation.tests.live import ROOT, free_port, platform_env

LIMIT = 3


@pytest.mark.parametrize("forwarded, proxies, expected", [
    ("", 0, "10.0.0.1"),
    ("203.0.113.5", 0, "10.0.0.1"),                 # nobody vouches for the header: ignored
    ("203.0.113.5", 1, "203.0.113.5"),
    ("1.2.3.4, 203.0.113.5", 1, "203.0.113.5"),     # the client's own entry, left of the proxy's, is not read
    ("1.2.3.4, 203.0.113.5", 2, "1.2.3.4"),
    ("203.0.113.5", 2, "10.0.0.1"),                 # fewer hops than proxies: the header is not trusted
])
def test_forwarded_client_counts_trusted_proxies_from_the_right(forwarded, proxies, expected):
    assert forwarded_client(remote="10.0.0.1", forwarded=forwarded, proxies=proxies) == expected


@pytest.mark.parametrize("kind", ["http", "websocket"])
@pytest.mark.parametrize("proxies, expected", [(0, ("127.0.0.1", 50000)), (1, ("203.0.113.5", 0))])
def test_the_asgi_scope_client_follows_the_setting_for_both_protocols(settings, kind, proxies, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    scope = {"type": kind, "client": ("127.0.0.1", 50000),
             "headers": [(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-for", b"203.0.113.5")]}
    asyncio.run(TrustedProxyMiddleware(app)(scope, None, None))
    assert seen["client"] == expected


def test_every_way_of_starting_uvicorn_leaves_the_header_to_the_platform():
    assert set(UVICORN_ARGS) <= set(web_command("127.0.0.1", 8000))
    for path in ("docker/Dockerfile", "docker/compose.yaml", "platform/k8s/web.yaml"):
        text = (ROOT / path).read_text()
        assert "--no-proxy-headers" in text and not re.search(r"(?<!no-)--proxy-headers", text), path
        assert "FORWARDED_ALLOW_IPS" not in text, path
    assert "FORWARDED_ALLOW_IPS" not in (ROOT / "platform/k8s/configmap.yaml").read_text()


# --- the real server ----------------------------------------------------------------------------


class Browser:
    """Cookies and CSRF like a browser, straight to the server (no proxy from the environment)."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def request(self, method, path, *, data: bytes | None = None, headers=None) -> tuple[int, str]:
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(request, timeout=20) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def login(self, email: str, password: str, forwarded: str) -> int:
        _status, page = self.request("GET", "/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "email": email, "password": password})
        return self.request("POST", "/login/", data=body.encode(), headers={
            "X-Forwarded-For": forwarded, "Content-Type": "application/x-www-form-urlencoded"})[0]

    def anonymous_api_call(self, forwarded: str) -> int:
        return self.request("POST", "/api/v1/invitations/accept", data=json.dumps({"token": "nope"}).encode(),
                            headers={"X-Forwarded-For": forwarded, "Content-Type": "application/json"})[0]


@contextmanager
def platform_server(tmp_path, proxies: int):
    port = free_port()
    env = platform_env(VAR_DIR=tmp_path / f"var-{proxies}", TRUSTED_PROXY_COUNT=proxies,
                       LOGIN_FAILURE_LIMIT=LIMIT, API_RATE_ANON=f"{LIMIT}/day")
    log = open(tmp_path / f"web-{proxies}.log", "w+")
    process = subprocess.Popen(web_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    browser = Browser(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while not (_listening(port) and browser.request("GET", "/api/v1/health")[0] == 200):
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise AssertionError("the web server did not start:\n" + log.read())
            time.sleep(0.2)
        yield browser
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# transactional_db: the server process writes in transactions of its own, which would wait for a test transaction.
def test_a_local_client_cannot_reset_its_lock_or_rate_limit_with_x_forwarded_for(tmp_path, transactional_db):
    """TRUSTED_PROXY_COUNT=0 (the default): the header changes nothing, from loopback too, where
    uvicorn's own proxy-header rule would have believed it."""
    with platform_server(tmp_path, proxies=0) as browser:
        for number in range(LIMIT):
            assert browser.login("victim@a.test", "wrong", f"203.0.113.{number}") == 401
        assert browser.login("victim@a.test", "wrong", "198.51.100.77") == 429

        for number in range(LIMIT):
            assert browser.anonymous_api_call(f"203.0.113.{number}") == 404
        assert browser.anonymous_api_call("198.51.100.77") == 429


def test_behind_one_trusted_proxy_the_forwarded_address_is_the_client(tmp_path, transactional_db):
    with platform_server(tmp_path, proxies=1) as browser:
        for _ in range(LIMIT):
            assert browser.login("victim@a.test", "wrong", "203.0.113.1") == 401
        assert browser.login("victim@a.test", "wrong", "203.0.113.1") == 429
        # The proxy reports another client: that one has its own count. What a client writes in
        # front of the proxy's entry is not read.
        assert browser.login("victim@a.test", "wrong", "203.0.113.1, 203.0.113.2") == 401

        for _ in range(LIMIT):
            assert browser.anonymous_api_call("203.0.113.1") == 404
        assert browser.anonymous_api_call("203.0.113.1") == 429
        assert browser.anonymous_api_call("203.0.113.2") == 404
