"""The outbound guard on the openai provider: base URLs refused when saved and when connecting (a real
loopback listener sees no connection), DNS rebinding caught at connect time, redirects not followed, the
endpoint's answer bodies kept out of API answers and job errors, and the numeric settings' bounds."""
from __future__ import annotations

import socket

import pytest

from config.tenancy import tenant_scope
from config.tests.fake_dns import fake_dns
from generation.models import GenerationPolicy, Job, ProviderCredential
from generation.providers.base import ProviderError, StageContext
from generation.providers.openai.text import OpenAIText, moderate
from generation.tests.openai_stub import OpenAIStub, Reply, chat_reply, error_reply
from generation.tests.test_pipeline import drain, start

PUBLIC_IP = "93.184.216.34"
# Put in every answer body of the fake endpoint: it must never reach a tenant.
MARKER = "UPSTREAM-BODY-7f3a9c"
PROVIDER_URL = "/api/v1/providers/openai"
STYLE_OK = {"name": "documentary", "tags": ["calm"], "visual_description": "Soft daylight", "mood": "curious",
            "palette": ["#112233", "#445566", "#778899"]}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def dns(monkeypatch):
    table = fake_dns(monkeypatch)
    table["api.example.test"] = PUBLIC_IP
    return table


@pytest.fixture
def allow_private(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_URLS = True


def ctx(tmp_path, **settings) -> StageContext:
    return StageContext(organization_id=1, job_id="job-1", options={"duration_s": 8, "shots": 2}, prompts={},
                        work_dir=tmp_path,
                        settings={"api_key": "sk-test", "model": "m", "timeout_s": 2, "max_attempts": 2,
                                  "backoff_s": 0, **settings})


def loopback_forms(port: int) -> list[str]:
    """The loopback listener's address, spelled the ways a tenant might try."""
    return [
        f"http://127.0.0.1:{port}/v1",
        f"http://localhost:{port}/v1",
        f"http://127.1:{port}/v1",
        f"http://2130706433:{port}/v1",
        f"http://0x7f.1:{port}/v1",
        f"http://017700000001:{port}/v1",
        f"http://[::ffff:127.0.0.1]:{port}/v1",
        f"http://[::ffff:7f00:1]:{port}/v1",
        f"http://0.0.0.0:{port}/v1",
        f"http://internal.example.test:{port}/v1",  # a name that resolves to the loopback
    ]


OTHER_REFUSED = [
    "http://10.0.0.1/v1",
    "http://192.168.1.20:8000/v1",
    "http://172.16.0.5/v1",
    "http://100.64.0.1/v1",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::1]/v1",
    "http://[::1]/v1",
    "http://[64:ff9b::a00:1]/v1",
    "http://user:secret@api.example.test/v1",
    "ftp://api.example.test/v1",
    "file:///etc/passwd",
]


# --- at save -----------------------------------------------------------------------------------


def test_save_refuses_loopback_private_link_local_metadata_mapped_and_numeric_forms(tenant_a, listener, dns):
    dns["internal.example.test"] = "127.0.0.1"
    client = tenant_a.client()
    for url in loopback_forms(listener.port) + OTHER_REFUSED:
        response = client.put(PROVIDER_URL, {"settings": {"base_url": url}}, format="json")
        assert response.status_code == 400, (url, response.content)
        error = response.json()["error"]
        assert error["code"] == "url_not_allowed", (url, error)
        assert list(error["fields"]) == ["base_url"], (url, error)
    with tenant_scope(tenant_a.organization):
        assert not ProviderCredential.objects.exists()
    assert listener.seen() == 0


def test_save_accepts_a_public_endpoint_and_private_ones_by_setting(tenant_a, dns, settings):
    client = tenant_a.client()
    assert client.put(PROVIDER_URL, {"settings": {"base_url": "https://api.example.test/v1"}},
                      format="json").status_code == 201
    refused = client.put(PROVIDER_URL, {"settings": {"base_url": "http://10.0.0.7:8000/v1"}}, format="json")
    assert refused.status_code == 400
    settings.OUTBOUND_ALLOWED_NETWORKS = ["10.0.0.0/24"]
    assert client.put(PROVIDER_URL, {"settings": {"base_url": "http://10.0.0.7:8000/v1"}},
                      format="json").status_code == 200
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    settings.OUTBOUND_ALLOW_PRIVATE_URLS = True
    assert client.put(PROVIDER_URL, {"settings": {"base_url": "http://127.0.0.1:8000/v1"}},
                      format="json").status_code == 200


# --- at connect --------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["chat", "moderation"])
def test_stored_loopback_urls_are_refused_before_any_connection(call, tmp_path, listener, dns):
    """Settings saved before the guard existed, or by an operator: the provider refuses them itself."""
    dns["internal.example.test"] = "127.0.0.1"
    for url in loopback_forms(listener.port):
        context = ctx(tmp_path, base_url=url)
        with pytest.raises(ProviderError) as caught:
            if call == "chat":
                OpenAIText().style(topic="bees", catalogue={}, ctx=context)
            else:
                moderate("some text", context)
        assert caught.value.code == "url_not_allowed", (url, caught.value)
    assert listener.seen() == 0


def test_dns_rebinding_is_caught_at_connect_time(tenant_a, tmp_path, listener, monkeypatch):
    """The name is public when saved and when the client is made, then points at the loopback when the
    connection opens: the connection is vetted on its own lookup and refused."""
    answers = iter([PUBLIC_IP, PUBLIC_IP])
    real = socket.getaddrinfo
    lookups = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "rebind.example.test":
            address = next(answers, "127.0.0.1")
            lookups.append(address)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = f"http://rebind.example.test:{listener.port}/v1"
    assert tenant_a.client().put(PROVIDER_URL, {"settings": {"base_url": url}}, format="json").status_code == 201
    with pytest.raises(ProviderError) as caught:
        OpenAIText().style(topic="bees", catalogue={}, ctx=ctx(tmp_path, base_url=url, max_attempts=3))
    assert caught.value.code == "url_not_allowed" and "127.0.0.1" in str(caught.value)
    assert lookups == [PUBLIC_IP, PUBLIC_IP, "127.0.0.1"]  # save, client, connection: refused, not retried
    assert listener.seen() == 0


def test_the_connection_goes_to_the_vetted_address_with_the_host_name(tmp_path, allow_private, monkeypatch):
    """Vetting and connecting use one lookup: a later answer (here another loopback address, where a
    second listener waits) is never the one connected to."""
    with OpenAIStub() as stub:
        port = int(stub.base_url.rsplit(":", 1)[1].split("/")[0])
        elsewhere = socket.socket()
        elsewhere.bind(("127.0.0.2", port))
        elsewhere.listen(4)
        elsewhere.settimeout(0.2)
        answers = iter(["127.0.0.1", "127.0.0.1"])
        real = socket.getaddrinfo

        def getaddrinfo(host, port_, *args, **kwargs):
            if host == "models.example.test":
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers, "127.0.0.2"), port_))]
            return real(host, port_, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        stub.push_chat(chat_reply(STYLE_OK))
        try:
            result = OpenAIText().style(topic="bees", catalogue={}, ctx=ctx(
                tmp_path, base_url=f"http://models.example.test:{port}/v1"))
            with pytest.raises(TimeoutError):
                elsewhere.accept()
        finally:
            elsewhere.close()
    assert result.value == STYLE_OK
    [request] = stub.requests
    assert request.headers["host"] == f"models.example.test:{port}"


def test_redirects_are_not_followed(tmp_path, allow_private, listener):
    with OpenAIStub() as stub:
        stub.push_chat(Reply(status=307, headers={"Location": f"http://127.0.0.1:{listener.port}/v1/chat/completions"},
                             body={"error": {"message": MARKER}}))
        with pytest.raises(ProviderError) as caught:
            OpenAIText().style(topic="bees", catalogue={}, ctx=ctx(tmp_path, base_url=stub.base_url))
        assert len(stub.requests) == 1
    assert (caught.value.code, caught.value.upstream_status) == ("provider_redirect", 307)
    assert MARKER not in str(caught.value)
    assert listener.seen() == 0


# --- answer bodies stay upstream ---------------------------------------------------------------


@pytest.mark.parametrize("reply, code, status", [
    (error_reply(401, f"bad key {MARKER}"), "provider_http_error", 401),
    (error_reply(400, f"unsafe {MARKER}", code="content_policy_violation"), "provider_refused", 400),
    (Reply(status=404, body=f"<html>{MARKER} internal page</html>"), "provider_http_error", 404),
    (error_reply(503, f"down {MARKER}"), "provider_http_error", 503),
])
def test_error_answers_give_a_code_and_status_but_not_the_body(reply, code, status, tmp_path, allow_private, caplog):
    with OpenAIStub() as stub:
        stub.push_chat(reply, reply)
        with pytest.raises(ProviderError) as caught:
            OpenAIText().style(topic="bees", catalogue={}, ctx=ctx(tmp_path, base_url=stub.base_url))
    assert (caught.value.code, caught.value.upstream_status) == (code, status)
    assert MARKER not in str(caught.value) and MARKER not in repr(caught.value)
    assert caught.value.__cause__ is None or MARKER not in str(caught.value.__cause__)
    assert any(MARKER in record.getMessage() for record in caplog.records)  # operators can still read it


def test_moderation_errors_reach_the_api_without_the_body(tenant_a, allow_private):
    with OpenAIStub() as stub:
        with tenant_scope(tenant_a.organization):
            GenerationPolicy.objects.create(organization=tenant_a.organization, moderation_provider="openai")
            ProviderCredential.objects.create(organization=tenant_a.organization, provider="openai", settings={
                "base_url": stub.base_url, "max_attempts": 1, "timeout_s": 2})
        stub.push_moderation(error_reply(401, f"key sk-internal {MARKER}"))
        project = tenant_a.project("Moderated")
        response = tenant_a.client().post("/api/v1/jobs", {"project": str(project.pk), "topic": "A lighthouse"},
                                          format="json")
        assert len(stub.requests) == 1
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "moderation_unavailable"
    assert "HTTP 401" in response.json()["error"]["message"]
    assert MARKER not in response.content.decode()


def test_a_failed_job_shows_the_code_and_status_but_not_the_body(tenant_a, run_commits, allow_private, settings):
    settings.STEP_RETRY_BACKOFF_S = 0
    with OpenAIStub() as stub:
        stub.push_chat(*[error_reply(403, f"forbidden {MARKER}")] * 10)
        with tenant_scope(tenant_a.organization):
            GenerationPolicy.objects.create(organization=tenant_a.organization, providers={"text": ["openai"]})
            ProviderCredential.objects.create(organization=tenant_a.organization, provider="openai", settings={
                "base_url": stub.base_url, "max_attempts": 1, "timeout_s": 2})
        job = start(tenant_a, run_commits)
        drain(run_commits)
        assert stub.requests
    with tenant_scope(tenant_a.organization):
        job = Job.objects.get(pk=job.pk)
        step_errors = [step.error for step in job.steps.all() if step.error]
    assert job.status == "failed"
    assert (job.error["code"], job.error["upstream_status"]) == ("provider_http_error", 403), job.error
    assert MARKER not in str(job.error) and MARKER not in str(step_errors)
    client = tenant_a.client()
    for url in (f"/api/v1/jobs/{job.pk}", f"/api/v1/jobs/{job.pk}/events"):
        response = client.get(url)
        assert response.status_code == 200 and MARKER not in response.content.decode(), url


# --- numeric bounds ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, value", [
    ("timeout_s", 0), ("timeout_s", 601), ("timeout_s", "60"),
    ("max_attempts", 0), ("max_attempts", 11), ("max_attempts", 2.5), ("max_attempts", True),
    ("backoff_s", -1), ("backoff_s", 61),
    ("max_backoff_s", 601),
    ("temperature", -0.1), ("temperature", 2.5),
    ("max_tokens", 0), ("max_tokens", 1_000_001),
    ("seed", 2 ** 64), ("seed", 1.5),
    ("response_format", "xml"),
    ("prices", {"input_per_1k": "-1", "output_per_1k": "0"}), ("prices", {"input_per_1k": "lots"}),
])
def test_out_of_range_settings_are_a_400_naming_the_setting(name, value, tenant_a):
    response = tenant_a.client().put(PROVIDER_URL, {"settings": {name: value}}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_provider_settings" and list(error["fields"]) == [name], error
    with tenant_scope(tenant_a.organization):
        assert not ProviderCredential.objects.exists()


def test_settings_at_their_bounds_are_saved(tenant_a):
    settings = {"timeout_s": 600, "max_attempts": 10, "backoff_s": 0, "max_backoff_s": 600, "temperature": 2,
                "max_tokens": 1, "seed": -(2 ** 63), "response_format": "none",
                "prices": {"input_per_1k": "0.5", "output_per_1k": "1000"}}
    response = tenant_a.client().put(PROVIDER_URL, {"settings": settings}, format="json")
    assert response.status_code == 201, response.content


def test_stored_values_out_of_range_are_clamped_when_used(tmp_path, allow_private):
    with OpenAIStub() as stub:
        stub.push_chat(*[error_reply(500)] * 12)
        with pytest.raises(ProviderError, match="gave up after 10 attempts"):
            OpenAIText().style(topic="bees", catalogue={}, ctx=ctx(
                tmp_path, base_url=stub.base_url, max_attempts=1000, backoff_s=0, max_backoff_s=0))
        assert len(stub.requests) == 10


def test_operators_edits_in_the_admin_pass_the_same_checks(tenant_a, dns):
    import json

    from generation.admin import ProviderCredentialForm

    def form(settings: dict) -> ProviderCredentialForm:
        return ProviderCredentialForm(data={"organization": tenant_a.organization.pk, "provider": "openai",
                                            "settings": json.dumps(settings), "created_at": "2026-01-01 00:00"})

    with tenant_scope(tenant_a.organization):
        metadata = form({"base_url": "http://169.254.169.254/latest/"})
        assert not metadata.is_valid() and "169.254.169.254" in str(metadata.errors["settings"])
        too_many = form({"max_attempts": 50})
        assert not too_many.is_valid() and "max_attempts" in str(too_many.errors["settings"])
        fine = form({"base_url": "https://api.example.test/v1", "max_attempts": 3})
        assert fine.is_valid(), fine.errors
