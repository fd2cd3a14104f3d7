"""The providers page of the team pages, and the connection test (portal and API), against a real
OpenAI-compatible server process on the loopback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from config.tenancy import tenant_scope
from generation.models import ProviderCredential

SERVER = Path(__file__).resolve().parent / "openai_server.py"


def portal(tenant, role: str = "owner") -> Client:
    """A browser session of a member with `role` (forms post as forms, not JSON)."""
    client = Client()
    client.force_login(tenant.owner if role == "owner" else tenant.member(role))
    return client


@pytest.fixture(scope="module")
def endpoint():
    process = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def loopback_allowed(settings, monkeypatch):
    settings.OUTBOUND_ALLOW_PRIVATE_URLS = True  # the endpoint listens on the loopback
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_owners_save_a_provider_and_test_its_connection(tenant_a, endpoint, loopback_allowed):
    owner, api = portal(tenant_a), tenant_a.client()
    page = owner.get("/team/providers/")
    assert page.status_code == 200
    for name in (b"offline", b"openai", b"diffusers", b"transformers"):
        assert b'id="provider-' + name + b'"' in page.content
    saved = owner.post("/team/providers/openai/", {"settings": f'{{"base_url": "{endpoint}", "max_attempts": 1}}',
                                                   "api_key": "sk-portal-secret"})
    assert saved.status_code == 302 and saved["Location"] == "/team/providers/"
    with tenant_scope(tenant_a.organization):
        credential = ProviderCredential.objects.get(provider="openai")
    assert credential.settings["base_url"] == endpoint
    assert credential.secret_encrypted and "sk-portal-secret" not in credential.secret_encrypted
    page = owner.get("/team/providers/")
    assert b"key saved" in page.content and b"sk-portal-secret" not in page.content
    tested = owner.post("/team/providers/openai/test", follow=True)
    assert b"gpt-stub" in tested.content  # the server's model list, through the outbound guard
    answer = api.post("/api/v1/providers/openai/test")
    assert answer.status_code == 200 and answer.json()["ok"] is True


def test_bad_settings_are_shown_on_the_form_and_nothing_is_saved(tenant_a):
    owner = portal(tenant_a)
    not_json = owner.post("/team/providers/openai/", {"settings": "{base_url:", "api_key": ""})
    assert not_json.status_code == 400 and b"not valid JSON" in not_json.content
    unknown = owner.post("/team/providers/openai/", {"settings": '{"colour": "red"}', "api_key": ""})
    assert unknown.status_code == 400
    private = owner.post("/team/providers/openai/", {"settings": '{"base_url": "http://10.0.0.7/v1"}'})
    assert private.status_code == 400  # the outbound guard refuses it before it is stored
    with tenant_scope(tenant_a.organization):
        assert not ProviderCredential.objects.exists()


def test_a_failed_connection_says_why(tenant_a, loopback_allowed):
    owner = portal(tenant_a)
    assert owner.post("/team/providers/openai/", {"settings": '{"base_url": "http://127.0.0.1:9/v1", '
                                                              '"max_attempts": 1, "timeout_s": 2}',
                                                  "api_key": "sk-x"}).status_code == 302
    answer = tenant_a.client().post("/api/v1/providers/openai/test").json()
    assert answer["ok"] is False and answer["code"] == "provider_unreachable"
    page = owner.post("/team/providers/openai/test", follow=True)
    assert b"does not work yet" in page.content


def test_only_owners_change_providers_and_members_only_see_them(tenant_a, tenant_b):
    admin = portal(tenant_a, "admin")
    page = admin.get("/team/providers/")
    assert page.status_code == 200 and b'id="provider-openai-form"' not in page.content
    assert admin.post("/team/providers/openai/", {"settings": "{}"}).status_code == 403
    assert portal(tenant_a, "producer").post("/team/providers/openai/test").status_code == 403
    assert portal(tenant_a).post("/team/providers/nonesuch/", {"settings": "{}"}).status_code == 404
    # what one organization saves, another never sees
    assert portal(tenant_a).post("/team/providers/offline/", {"settings": "{}"}).status_code == 302
    with tenant_scope(tenant_b.organization):
        assert not ProviderCredential.objects.exists()
    assert b"configured</span>" not in portal(tenant_b).get("/team/providers/").content.replace(b"not configured", b"")
