"""The hot reads take a fixed number of queries, however many jobs there are: the job list, a job's detail
(read once, not again to serialize it) and verify by hash. bench/load.py counts the same on the real server
under load."""
import hashlib

from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from config.tenancy import tenant_scope


def queries_of(client, method: str, path: str, body: dict | None = None) -> int:
    def call():
        return client.get(path) if method == "GET" else client.post(path, body, format="json")

    assert call().status_code == 200  # the first request of a key may record its last use
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code == 200, response.json()
    return len(captured)


def add_jobs(client, project, count: int) -> None:
    for n in range(count):
        response = client.post("/api/v1/jobs", {"project": str(project.pk), "topic": f"A lighthouse keeper, take {n}"},
                               format="json")
        assert response.status_code == 201, response.json()


def registered_hash(tenant) -> str:
    from rights.models import Content, Registration
    from rights.registry import registration_enqueue

    digest = hashlib.sha256(tenant.slug.encode()).hexdigest()
    with tenant_scope(tenant.organization):
        content = Content.objects.create(organization=tenant.organization, content_id=f"q{tenant.slug[-1]}000001",
                                         kind="video", source="upload", sha256=digest)
        registration_enqueue(content=content)
        # Verification names confirmed registrations only; the chain itself is not the point here.
        Registration.objects.filter(content=content).update(status="confirmed")
    return digest


def test_reads_take_the_same_queries_with_1_and_12_jobs(tenant_a, tenant_b):
    client = tenant_a.key_client()
    project = tenant_a.project("Launch")
    add_jobs(tenant_b.key_client(), tenant_b.project("Theirs"), 3)  # rows the tenant filter must skip
    add_jobs(client, project, 1)
    digest = registered_hash(tenant_a)
    job_id = client.get("/api/v1/jobs").json()["results"][0]["id"]

    def counts() -> dict:
        return {"list": queries_of(client, "GET", "/api/v1/jobs"),
                "detail": queries_of(client, "GET", f"/api/v1/jobs/{job_id}"),
                "verify": queries_of(APIClient(), "POST", "/api/v1/verify", {"sha256": digest})}

    first = counts()
    add_jobs(client, project, 11)
    assert client.get("/api/v1/jobs").json()["count"] == 12
    assert counts() == first
    # list: the key, the count, the page; detail: the key, the job, its steps, its content; verify: one.
    assert first == {"list": 3, "detail": 4, "verify": 1}
