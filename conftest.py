"""Shared test fixtures: always two organizations, and the switches for the production services.

`make test` runs the suite twice: the embedded mode, then (when TEST_DATABASE_URL and friends are
set) against PostgreSQL, Redis and RabbitMQ. A test marked `postgres`, `redis` or `rabbitmq` is
skipped where its service is not configured; with REQUIRE_SERVICES=1 in the services run, such a
skip fails the run instead (CI sets it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

SERVICES_RUN = os.environ.get("PLATFORM_TEST_RUN") == "services"
REQUIRE_SERVICES = SERVICES_RUN and os.environ.get("REQUIRE_SERVICES") == "1"
# Browser tests (accounts/tests/browser) drive headless Chromium; CI installs it and sets REQUIRE_BROWSER=1.
CHROMIUM_BIN = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"


def _service_available(marker: str) -> bool:
    if marker == "postgres":
        return connection.vendor == "postgresql"
    if marker == "redis":
        return bool(settings.REDIS_URL)
    if marker == "rabbitmq":
        return settings.BROKER_URL.startswith("amqp")
    if marker == "browser":
        return os.access(CHROMIUM_BIN, os.X_OK)
    return True


def pytest_runtest_setup(item):
    for marker in ("postgres", "redis", "rabbitmq"):
        if item.get_closest_marker(marker) and not _service_available(marker):
            if REQUIRE_SERVICES:
                pytest.fail(f"{marker} is required in this run but is not configured", pytrace=False)
            pytest.skip(f"needs {marker}: runs in the production-services run")
    if item.get_closest_marker("failures"):
        _failure_tests_setup()
    if item.get_closest_marker("browser") and not _service_available("browser"):
        if REQUIRE_BROWSER:
            pytest.fail(f"REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM_BIN}: make install-browser",
                        pytrace=False)
        pytest.skip(f"needs Chromium at {CHROMIUM_BIN} (make install-browser, or set CHROMIUM_BIN)")


def _failure_tests_setup() -> None:
    """The failure tests start their own servers from the machine's binaries, once per CI: in the
    production-services run, where a missing binary fails with REQUIRE_SERVICES=1."""
    if not SERVICES_RUN:
        pytest.skip("failure tests run once, in the production-services run (make test with TEST_DATABASE_URL)")
    from generation.tests.services import missing_binaries

    missing = missing_binaries()
    if missing and REQUIRE_SERVICES:
        pytest.fail(f"failure tests need {', '.join(missing)} on this machine", pytrace=False)
    if missing:
        pytest.skip(f"failure tests need {', '.join(missing)} on this machine")


def pytest_report_header(config):
    return f"platform test run: {'production services' if SERVICES_RUN else 'embedded mode'}"


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    # Tests drive steps themselves unless they start a real worker (then they set QUEUE_ENGINE).
    settings.QUEUE_ENGINE = "manual"
    settings.MEDIA_ROOT = tmp_path / "media"
    if settings.CACHES["default"]["BACKEND"].endswith("FileBasedCache"):
        # Per test, so concurrent pytest runs on one checkout don't clear each other's cache.
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": tmp_path / "cache"}}


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@dataclass
class Tenant:
    """One organization with its owner, and helpers to act as its members and keys."""

    organization: object
    owner: object
    _counter: list = field(default_factory=lambda: [0])

    @property
    def slug(self) -> str:
        return self.organization.slug

    def member(self, role: str):
        from accounts.models import Membership, User
        from config.tenancy import tenant_scope

        self._counter[0] += 1
        user = User.objects.create_user(email=f"{role}{self._counter[0]}@{self.slug}.test", password=None)
        with tenant_scope(self.organization):
            Membership.objects.create(organization=self.organization, user=user, role=role)
        return user

    def client(self, role: str = "owner", user=None) -> APIClient:
        """An API client signed in as a member with `role` of this organization."""
        user = user or (self.owner if role == "owner" else self.member(role))
        client = APIClient()
        client.force_login(user)
        client.credentials(HTTP_X_ORGANIZATION=self.slug)
        client.user = user
        return client

    def key(self, scopes=None) -> tuple[object, str]:
        from accounts import services
        from accounts.audit import Actor
        from accounts.roles import SCOPES
        from config.tenancy import tenant_scope

        with tenant_scope(self.organization):
            return services.api_key_create(
                organization=self.organization, name="test key", scopes=list(scopes or SCOPES),
                actor=Actor(scopes=frozenset(SCOPES)),
            )

    def key_client(self, scopes=None) -> APIClient:
        _key, plain = self.key(scopes)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
        return client

    def project(self, name: str = "Project", description: str = ""):
        from accounts.audit import Actor
        from config.tenancy import tenant_scope
        from projects import services

        with tenant_scope(self.organization):
            return services.project_create(
                organization=self.organization, name=name, description=description, actor=Actor(user=self.owner)
            )


def make_tenant(slug: str) -> Tenant:
    from accounts import services
    from accounts.models import User

    owner = User.objects.create_user(email=f"owner@{slug}.test", password=None)
    organization = services.organization_create(name=f"Studio {slug.upper()}", slug=slug, owner=owner)
    return Tenant(organization=organization, owner=owner)


@pytest.fixture
def tenant_a(db) -> Tenant:
    return make_tenant("studio-a")


@pytest.fixture
def tenant_b(db) -> Tenant:
    return make_tenant("studio-b")


@pytest.fixture
def run_commits(django_capture_on_commit_callbacks):
    """Run commit callbacks (dispatch, advancing) as they would run after each real commit."""

    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    return run


@pytest.fixture
def listener():
    """A loopback TCP listener that counts the connections made to it (config/tests/loopback.py)."""
    from config.tests.loopback import Listener

    running = Listener()
    yield running
    running.close()
