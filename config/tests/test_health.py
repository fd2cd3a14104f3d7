import pytest


def test_health_reports_every_part_and_is_public(client, db):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "broker", "storage", "chain"}
    for name in ("database", "cache", "storage"):
        assert body["checks"][name]["status"] == "ok" and body["checks"][name]["required"] is True


def test_health_answers_503_when_a_required_part_is_down(client, db, settings):
    settings.BROKER_URL = "amqp://guest:guest@127.0.0.1:9//"  # nothing listens on port 9
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["broker"] == {**body["checks"]["broker"], "status": "down", "required": True}
    assert body["checks"]["database"]["status"] == "ok"


def test_health_reports_a_configured_chain_node_that_is_down(client, db, settings):
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9/"
    body = client.get("/api/v1/health").json()
    assert body["checks"]["chain"]["status"] == "down" and body["checks"]["chain"]["required"] is True


def test_a_probe_can_require_only_some_parts(client, db, settings):
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9/"
    assert client.get("/api/v1/health").status_code == 503
    ready = client.get("/api/v1/health?require=database,cache")
    assert ready.status_code == 200 and ready.json()["checks"]["chain"]["status"] == "down"
    assert client.get("/api/v1/health?require=database,chain").status_code == 503
    assert client.get("/api/v1/health?require=disk").status_code == 400


def test_health_checks_the_parts_at_most_once_per_cache_period(client, db, settings):
    settings.HEALTH_CACHE_S = 60
    first = client.get("/api/v1/health")
    settings.BROKER_URL = "amqp://guest:guest@127.0.0.1:9//"  # down, but not checked again within the period
    assert client.get("/api/v1/health").json() == first.json()
    settings.HEALTH_CACHE_S = 0
    assert client.get("/api/v1/health").status_code == 503


@pytest.mark.postgres
def test_health_on_postgresql(client, db):
    assert client.get("/api/v1/health").json()["checks"]["database"]["backend"] == "postgresql"


@pytest.mark.redis
def test_health_on_redis(client, db):
    assert client.get("/api/v1/health").json()["checks"]["cache"]["backend"] == "redis"


@pytest.mark.rabbitmq
def test_health_on_rabbitmq(client, db):
    broker = client.get("/api/v1/health").json()["checks"]["broker"]
    assert broker["status"] == "ok" and broker["required"] is True


def test_openapi_schema_and_docs_are_served_without_any_cdn(client, db):
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/v1/projects" in text and "Required scope:** `project:write`" in text
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html and "/static/drf_spectacular_sidecar/" in html
