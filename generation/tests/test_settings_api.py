"""Generation settings through the API: budgets and policy, provider credentials stored encrypted."""
from accounts.crypto import secret_decrypt
from accounts.models import AuditEntry
from config.tenancy import tenant_scope
from generation.models import ProviderCredential
from config.tests.fake_dns import fake_dns


def test_owner_sets_budgets_policy_and_a_provider_key_that_is_stored_encrypted(tenant_a, monkeypatch):
    fake_dns(monkeypatch)["llm.example"] = "93.184.216.34"  # a public address: the outbound guard lets it be
    owner = tenant_a.client()
    response = owner.patch("/api/v1/generation-policy", {"monthly_budget": "50.00", "blocked_terms": ["war"],
                                                        "providers": {"text": ["openai", "offline"]}}, format="json")
    assert response.status_code == 200, response.json()
    body = owner.get("/api/v1/generation-policy").json()
    assert body["monthly_budget"] == "50.00" and body["spend"]["month_budget"] is not None
    bad = owner.patch("/api/v1/generation-policy", {"providers": {"text": ["nope"]}}, format="json")
    assert bad.status_code == 400
    put = owner.put("/api/v1/providers/openai", {"settings": {"base_url": "https://llm.example/v1", "model": "m"},
                                                 "api_key": "sk-live-secret"}, format="json")
    assert put.status_code == 201 and put.json()["has_api_key"] and "sk-live-secret" not in put.content.decode()
    assert "sk-live-secret" not in owner.get("/api/v1/providers/openai").content.decode()
    with tenant_scope(tenant_a.organization):
        stored = ProviderCredential.objects.get(provider="openai")
        assert "sk-live-secret" not in stored.secret_encrypted
        assert secret_decrypt(stored.secret_encrypted) == "sk-live-secret"
        entry = AuditEntry.objects.get(action="provider_credential.set")
        assert "sk-live-secret" not in str(entry.after)
    assert owner.put("/api/v1/providers/nope", {}, format="json").status_code == 404


def test_only_owners_change_settings(tenant_a):
    producer = tenant_a.client("producer")
    assert producer.get("/api/v1/generation-policy").status_code == 200
    assert producer.patch("/api/v1/generation-policy", {"monthly_budget": "1"}, format="json").status_code == 403
    assert producer.put("/api/v1/providers/openai", {"api_key": "x"}, format="json").status_code == 403


def test_a_local_model_path_must_lie_under_the_models_folder(tenant_a, settings):
    """A studio owner names a model folder of the GPU workers, never any other folder of the machine."""
    settings.LOCAL_MODELS_DIR = "/srv/models"
    owner = tenant_a.client()
    for path in ("/etc", "/srv/models/../../etc/passwd", "relative/model", "/srv/models", "/srv/modelsX/a"):
        refused = owner.put("/api/v1/providers/transformers", {"settings": {"model_path": path}}, format="json")
        assert refused.status_code == 400 and "model_path" in refused.json()["error"]["fields"], path
        refused = owner.put("/api/v1/providers/diffusers", {"settings": {"image_model_path": path}}, format="json")
        assert refused.status_code == 400 and "image_model_path" in refused.json()["error"]["fields"], path
    assert owner.put("/api/v1/providers/transformers", {"settings": {"model_path": "/srv/models/qwen"}},
                     format="json").status_code in (200, 201)
    assert owner.put("/api/v1/providers/diffusers", {"settings": {"video_model_path": "/srv/models/svd/"}},
                     format="json").status_code in (200, 201)
