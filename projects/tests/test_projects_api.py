from accounts.models import AuditEntry
from config.tenancy import tenant_scope


def test_owner_creates_lists_updates_and_deletes_a_project_with_audit(tenant_a):
    client = tenant_a.client("owner")
    created = client.post("/api/v1/projects", {"name": "Trailer", "description": "Launch"})
    assert created.status_code == 201, created.json()
    project_id = created.json()["id"]

    listed = client.get("/api/v1/projects").json()
    assert [p["id"] for p in listed["results"]] == [project_id]

    changed = client.patch(f"/api/v1/projects/{project_id}", {"name": "Teaser"})
    assert changed.status_code == 200 and changed.json()["name"] == "Teaser"

    assert client.delete(f"/api/v1/projects/{project_id}").status_code == 204
    assert client.get(f"/api/v1/projects/{project_id}").status_code == 404

    with tenant_scope(tenant_a.organization):
        actions = list(AuditEntry.objects.filter(target_id=project_id).values_list("action", flat=True))
        update = AuditEntry.objects.get(target_id=project_id, action="project.update")
    assert sorted(actions) == ["project.create", "project.delete", "project.update"]
    assert update.before == {"name": "Trailer"} and update.after == {"name": "Teaser"}
    assert update.actor == tenant_a.owner


def test_duplicate_project_name_is_a_conflict_not_a_500(tenant_a):
    client = tenant_a.client()
    client.post("/api/v1/projects", {"name": "Same"})
    response = client.post("/api/v1/projects", {"name": "Same"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "name_taken"


def test_same_project_name_is_fine_in_another_organization(tenant_a, tenant_b):
    assert tenant_a.client().post("/api/v1/projects", {"name": "Same"}).status_code == 201
    assert tenant_b.client().post("/api/v1/projects", {"name": "Same"}).status_code == 201
