"""The portal in a real browser: the ASGI application (HTTP and websockets) served by uvicorn in a
thread of the test process over the test database, a step worker thread so jobs really progress, and
headless Chromium driven through Playwright's sync API. Screenshots go to var/screenshots/.

Threads, not processes: they share the test's settings (MEDIA_ROOT, QUEUE_ENGINE=manual, ...) and the
database file or server; `transactional_db` makes the test's rows visible to them.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import close_old_connections, connection
from django.db.backends.signals import connection_created

from config.queues import QUEUES

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM_BIN = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")  # the root conftest skips without it
SCREENSHOTS = ROOT / "var" / "screenshots"
PASSWORD = "browser tests pass phrase 42"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortalServer:
    """uvicorn serving config.asgi:application on a loopback port, in a daemon thread."""

    def __init__(self):
        import uvicorn

        from config.asgi import application

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(application, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", ws="websockets-sansio", loop="asyncio", access_log=False,
                                proxy_headers=False)  # as deployed: config/client_address.py UVICORN_ARGS
        self.server = uvicorn.Server(config)  # off the main thread it installs no signal handlers
        self.thread = threading.Thread(target=self.server.run, name="portal-server", daemon=True)

    def start(self) -> PortalServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the portal server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class StepWorker(threading.Thread):
    """Runs ready steps of every queue as they appear, and the sweep (registrations, retries) every
    second: what a worker process does, in a thread, with QUEUE_ENGINE=manual."""

    def __init__(self):
        super().__init__(name="step-worker", daemon=True)
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        from generation.queue import worker

        last_sweep = 0.0
        try:
            while not self.stopped.is_set():
                ran = False
                for queue in QUEUES:
                    try:
                        ran = bool(worker.execute_next(queue)) or ran
                    except Exception as exc:  # recorded; the test reports it
                        logger.exception("step worker: %s", exc)
                        self.errors.append(exc)
                if time.monotonic() - last_sweep > 1.0:
                    last_sweep = time.monotonic()
                    try:
                        worker.sweep()
                    except Exception as exc:
                        logger.exception("sweep: %s", exc)
                        self.errors.append(exc)
                if not ran:
                    self.stopped.wait(0.1)
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=60)


@pytest.fixture(scope="package")
def _async_unsafe_allowed():
    """Playwright's sync API keeps an event loop on the main thread, which Django's ORM would refuse
    to be called from; the test's own queries are plain synchronous ones. Only for these tests."""
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if before is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@contextmanager
def server_thread_connections():
    """For a server running in threads of this process: their connections are not kept (CONN_MAX_AGE 0:
    persistent ones would outlive the tests and keep PostgreSQL from dropping the test database; every
    thread's connection reads this same settings dict), and those a thread leaves open (a request cut
    short, a cancelled consumer) are closed at the end."""
    before = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 0
    opened = weakref.WeakSet()

    def remember(sender, connection, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            opened.add(connection)

    connection_created.connect(remember, weak=False)
    try:
        yield
    finally:
        connection_created.disconnect(remember)
        connection.settings_dict["CONN_MAX_AGE"] = before
        for wrapper in list(opened):
            if wrapper.connection is not None:
                try:
                    wrapper.connection.close()  # the driver's connection: Django's close() checks the thread
                except Exception:
                    pass


@pytest.fixture(scope="package")
def portal_server(django_db_setup, django_db_blocker):
    with server_thread_connections():
        server = PortalServer().start()
        yield server
        server.stop()


@pytest.fixture
def live_portal(portal_server, transactional_db, settings, tmp_path):
    """The portal's base URL, with a step worker running for the length of the test."""
    settings.CHAIN_DIR = tmp_path / "chain"
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
    worker = StepWorker()
    worker.start()
    yield portal_server.url
    worker.stop()
    close_old_connections()
    assert not worker.errors, f"the step worker failed: {worker.errors!r}"


@pytest.fixture(scope="package")
def browser(_async_unsafe_allowed):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "layout-report.txt").write_text("")  # this run's findings only
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM_BIN, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def new_context(browser, live_portal):
    """Fresh browser sessions (own cookies) against the live portal; closed at the end of the test,
    which fails if a script of any page threw an uncaught error, or the browser refused anything under
    the Content-Security-Policy (config/middleware.py; Chromium reports each refusal on the console)."""
    contexts, errors, refused = [], [], []

    def make(**options):
        context = browser.new_context(base_url=live_portal, viewport={"width": 1280, "height": 800},
                                      accept_downloads=True, locale="en-US", **options)
        context.set_default_timeout(15_000)
        context.on("weberror", lambda error: errors.append(f"{error.page.url if error.page else '?'}: {error.error}"))
        context.on("console", lambda message: refused.append(f"{message.page.url if message.page else '?'}: "
                                                             f"{message.text}")
                   if "Content Security Policy" in message.text else None)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"uncaught script errors: {errors}"
    assert not refused, "Content-Security-Policy violations:\n" + "\n".join(refused)


def with_password(user):
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    return user


def sign_in(page, user) -> None:
    """Through the login form, as a person would."""
    page.goto("/login/")
    page.fill("#id_email", user.email)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("#login-submit")
    assert "/login/" not in page.url, page.content()


MEDIA_READY_JS = """() => [...document.images].every((image) => image.complete) &&
    [...document.querySelectorAll('video')].every((video) => video.readyState >= 2 || video.error)"""

# Elements that stick out of the viewport to the right (the page scrolls sideways): the outermost ones.
OVERFLOW_JS = """() => {
    const width = document.documentElement.clientWidth, found = [];
    for (const node of document.body.querySelectorAll('*')) {
        const rect = node.getBoundingClientRect();
        if (rect.width === 0 || rect.right <= width + 1) continue;
        let clipped = false;
        for (let up = node.parentElement; up && up !== document.body; up = up.parentElement) {
            const style = getComputedStyle(up);
            if (style.overflowX !== 'visible' || up.getBoundingClientRect().right > width + 1) { clipped = true; break; }
        }
        if (clipped) continue;
        const name = node.tagName.toLowerCase() + (node.id ? '#' + node.id : '') +
            (node.classList.length ? '.' + [...node.classList].join('.') : '');
        found.push(name + ' right=' + Math.round(rect.right) + 'px');
    }
    return {scrollWidth: document.documentElement.scrollWidth, width, found: found.slice(0, 8)};
}"""


def screenshot(page, name: str) -> None:
    """`var/screenshots/<name>-desktop.png` and `<name>-phone.png`, full page; the viewport is restored.
    What sticks out sideways at either width is listed in var/screenshots/layout-report.txt."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    try:  # pictures and the video's first frame drawn, not a loading spinner
        page.wait_for_function(MEDIA_READY_JS, timeout=5_000)
    except PlaywrightTimeout:
        pass
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(100)  # a reflow and a paint
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        overflow = page.evaluate(OVERFLOW_JS)
        if overflow["scrollWidth"] > overflow["width"] or overflow["found"]:
            with open(SCREENSHOTS / "layout-report.txt", "a") as report:
                report.write(f"{name}-{label}.png ({page.url}): page {overflow['scrollWidth']}px wide in "
                             f"{overflow['width']}px; sticking out: {', '.join(overflow['found']) or '-'}\n")
    page.set_viewport_size(before)
