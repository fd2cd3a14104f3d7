"""Starting jobs through the API: validation, idempotency, budgets, policy, listing, tenancy."""
from decimal import Decimal

import pytest

from config.tenancy import tenant_scope
from generation.models import GenerationPolicy, Job, Step


@pytest.fixture
def producer(tenant_a):
    return tenant_a.client("producer")


@pytest.fixture
def project(tenant_a):
    return tenant_a.project("Launch")


def create(client, project, **body):
    payload = {"project": str(project.pk), "topic": "A lighthouse keeper at dawn", **body}
    return client.post("/api/v1/jobs", payload, format="json")


def test_post_returns_at_once_with_the_graph_and_queues_the_first_step(
    producer, project, tenant_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = create(producer, project, options={"duration_s": 30, "resolution": "720p", "shots": 8})
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "pending"
    body = producer.get(f"/api/v1/jobs/{response.json()['id']}").json()
    assert body["status"] == "style_detection" and body["options"]["shots"] == 8
    assert body["output"] == {"video_url": None, "thumbnail_url": None, "metadata": {}}
    with tenant_scope(tenant_a.organization):
        steps = list(Step.objects.filter(job_id=body["id"]).order_by("position").values_list("stage", "shot", "status"))
    assert len(steps) == 3 + 8 + 8 + 4
    assert steps[0] == ("style", 0, "queued") and all(status == "blocked" for *_, status in steps[1:])


def test_user_chosen_style_skips_detection(producer, project, tenant_a):
    body = create(producer, project, style="noir").json()
    assert body["error"]["fields"]["style"]
    body = create(producer, project, style="vintage").json()
    assert body["style"] == "vintage"


@pytest.mark.parametrize("options, field", [
    ({"duration_s": 1}, "duration_s"), ({"aspect_ratio": "4:3"}, "aspect_ratio"), ({"resolution": "4k"}, "resolution"),
    ({"shots": 0}, "shots"), ({"shots": "many"}, "shots"), ({"duration_s": 5, "shots": 8}, "shots"),
])
def test_bad_options_are_400_with_the_field(producer, project, options, field):
    response = create(producer, project, options=options)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in str(error["fields"])


def test_unknown_or_foreign_project_is_404(producer, tenant_b):
    foreign = tenant_b.project("Theirs")
    response = create(producer, foreign)
    assert response.status_code == 404 and response.json()["error"]["fields"] == {"project": ["not found"]}


def test_idempotency_key_returns_the_first_job(producer, project, tenant_a):
    first = producer.post("/api/v1/jobs", {"project": str(project.pk), "topic": "Same topic"}, format="json",
                          HTTP_IDEMPOTENCY_KEY="abc-123")
    again = producer.post("/api/v1/jobs", {"project": str(project.pk), "topic": "Same topic"}, format="json",
                          HTTP_IDEMPOTENCY_KEY="abc-123")
    assert first.status_code == 201 and again.status_code == 200 and first.json()["id"] == again.json()["id"]
    other = producer.post("/api/v1/jobs", {"project": str(project.pk), "topic": "Other"}, format="json",
                          HTTP_IDEMPOTENCY_KEY="abc-123")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_mismatch"
    with tenant_scope(tenant_a.organization):
        assert Job.objects.count() == 1


def test_blocked_topic_is_refused_with_the_reason(producer, project, tenant_a):
    with tenant_scope(tenant_a.organization):
        GenerationPolicy.objects.create(organization=tenant_a.organization, blocked_terms=["lighthouse"])
    response = create(producer, project)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "content_refused" and "lighthouse" in response.json()["error"]["message"]


def test_budget_exceeded_is_refused_up_front(producer, project, tenant_a):
    with tenant_scope(tenant_a.organization):
        GenerationPolicy.objects.create(organization=tenant_a.organization, monthly_budget=Decimal("0.00"))
        Job.objects.create(organization=tenant_a.organization, project=project, topic="old", cost=Decimal("1"))
    response = create(producer, project)
    assert response.status_code in (402, 409) and response.json()["error"]["code"] == "budget_exceeded"


def test_list_filters_by_status_and_project_and_viewer_cannot_create(producer, project, tenant_a):
    create(producer, project)
    other = tenant_a.project("Other")
    create(producer, other)
    listed = producer.get("/api/v1/jobs", {"project": str(other.pk)}).json()
    assert listed["count"] == 1
    assert producer.get("/api/v1/jobs", {"status": "completed"}).json()["count"] == 0
    assert producer.get("/api/v1/jobs", {"status": "bogus"}).status_code == 400
    viewer = tenant_a.client("viewer")
    assert viewer.get("/api/v1/jobs").json()["count"] == 2
    denied = create(viewer, project)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "missing_scope"
