"""Roles through the API: what each role (and each API key) may do, the owner rules, API key
lifecycle, suspended organizations and the audit log of sensitive actions."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.audit import Actor
from accounts.models import ApiKey, AuditEntry, Membership
from accounts.roles import ROLE_SCOPES, SCOPES, Role
from accounts.services import organization_set_suspended
from config.tenancy import dangerously_unscoped, tenant_scope
from projects.models import Project

# --- helpers ------------------------------------------------------------------------------------


def assert_error(response, status: int, code: str) -> dict:
    """The response is `status` in the API's error shape with `code`; returns the error object."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return error


def membership_id(tenant, user) -> str:
    with tenant_scope(tenant.organization):
        return str(Membership.objects.get(user=user).pk)


def role_of(tenant, user) -> str | None:
    with tenant_scope(tenant.organization):
        membership = Membership.objects.filter(user=user).first()
    return membership.role if membership else None


def audit_count(tenant) -> int:
    with tenant_scope(tenant.organization):
        return AuditEntry.objects.count()


def audit_entries(client, **filters) -> list[dict]:
    response = client.get("/api/v1/audit-log", filters)
    assert response.status_code == 200, response.content
    return response.json()["results"]


# --- the role table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    name: str
    scope: str
    method: str
    path: str
    body: dict | None
    ok_status: int

    def call(self, client, context: dict):
        return getattr(client, self.method)(self.path.format(**context), self.body)


ACTIONS = [
    Action("list projects", "project:read", "get", "/api/v1/projects", None, 200),
    Action("create project", "project:write", "post", "/api/v1/projects", {"name": "Brand new"}, 201),
    Action("update project", "project:write", "patch", "/api/v1/projects/{project}", {"name": "Renamed"}, 200),
    Action("delete project", "project:write", "delete", "/api/v1/projects/{project}", None, 204),
    Action("list members", "members:read", "get", "/api/v1/members", None, 200),
    Action("invite member", "members:manage", "post", "/api/v1/invitations",
           {"email": "newcomer@example.test", "role": "viewer"}, 201),
    Action("change member role", "members:manage", "patch", "/api/v1/members/{member}", {"role": "reviewer"}, 200),
    Action("remove member", "members:manage", "delete", "/api/v1/members/{member}", None, 204),
    Action("list API keys", "apikeys:manage", "get", "/api/v1/api-keys", None, 200),
    # The new key only asks for the scope needed to reach the endpoint, which every caller
    # reaching it holds: this row is about the endpoint's scope, not the key's.
    Action("create API key", "apikeys:manage", "post", "/api/v1/api-keys",
           {"name": "Partner", "scopes": ["apikeys:manage"]}, 201),
    Action("read audit log", "audit:read", "get", "/api/v1/audit-log", None, 200),
    Action("read organization", "org:read", "get", "/api/v1/organization", None, 200),
    Action("patch organization", "org:manage", "patch", "/api/v1/organization", {"name": "Renamed studio"}, 200),
]
ROLES = [Role.OWNER, Role.ADMIN, Role.PRODUCER, Role.REVIEWER, Role.VIEWER]


def _context(tenant) -> dict:
    """An existing project and a viewer to act on."""
    project = tenant.project("Existing")
    target = tenant.member("viewer")
    return {"project": str(project.pk), "member": membership_id(tenant, target)}


def test_the_role_table_is_the_documented_policy():
    """Which roles reach which action, pinned independently of ROLE_SCOPES' implementation."""
    allowed = {action.name: {role.value for role in ROLES if action.scope in ROLE_SCOPES[role]} for action in ACTIONS}
    everyone = {"owner", "admin", "producer", "reviewer", "viewer"}
    assert allowed == {
        "list projects": everyone,
        "create project": {"owner", "admin", "producer"},
        "update project": {"owner", "admin", "producer"},
        "delete project": {"owner", "admin", "producer"},
        "list members": everyone,
        "invite member": {"owner", "admin"},
        "change member role": {"owner", "admin"},
        "remove member": {"owner", "admin"},
        "list API keys": {"owner", "admin"},
        "create API key": {"owner", "admin"},
        "read audit log": {"owner", "admin"},
        "read organization": everyone,
        "patch organization": {"owner"},
    }


@pytest.mark.parametrize("action", ACTIONS, ids=lambda action: action.name.replace(" ", "-"))
@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.value)
def test_each_role_is_allowed_exactly_what_its_scopes_include(tenant_a, role, action):
    context = _context(tenant_a)
    client = tenant_a.client(role)
    entries_before = audit_count(tenant_a)

    response = action.call(client, context)

    if action.scope in ROLE_SCOPES[role]:
        assert response.status_code == action.ok_status, (role, action.name, response.content[:500])
    else:
        error = assert_error(response, 403, "missing_scope")
        assert action.scope in error["message"]
        assert audit_count(tenant_a) == entries_before, "a refused call must not change anything"


@pytest.mark.parametrize("action", ACTIONS, ids=lambda action: action.name.replace(" ", "-"))
def test_api_keys_are_allowed_exactly_their_scopes(tenant_a, action):
    context = _context(tenant_a)
    # Granting a role also takes holding its scopes (services.grant_check, test_grants.py); the member
    # rows grant viewer and reviewer.
    grants = ROLE_SCOPES[Role.REVIEWER] if action.scope == "members:manage" else set()
    with_scope = tenant_a.key_client(sorted({action.scope, *grants}))
    without_scope = tenant_a.key_client(sorted(set(SCOPES) - {action.scope}))

    assert_error(action.call(without_scope, context), 403, "missing_scope")
    response = action.call(with_scope, context)
    assert response.status_code == action.ok_status, response.content[:500]


def test_viewer_cannot_create_a_project(tenant_a):
    response = tenant_a.client("viewer").post("/api/v1/projects", {"name": "Nope"})
    assert_error(response, 403, "missing_scope")
    with tenant_scope(tenant_a.organization):
        assert not Project.objects.filter(name="Nope").exists()


def test_producer_cannot_manage_members(tenant_a):
    producer = tenant_a.client("producer")
    target = tenant_a.member("viewer")
    target_id = membership_id(tenant_a, target)

    assert_error(
        producer.post("/api/v1/invitations", {"email": "someone@example.test", "role": "viewer"}), 403, "missing_scope"
    )
    assert_error(producer.patch(f"/api/v1/members/{target_id}", {"role": "admin"}), 403, "missing_scope")
    assert_error(producer.delete(f"/api/v1/members/{target_id}"), 403, "missing_scope")

    assert role_of(tenant_a, target) == "viewer"
    # Reading members is still fine for a producer.
    assert producer.get("/api/v1/members").status_code == 200


def test_read_only_key_lists_projects_but_cannot_write(tenant_a):
    project = tenant_a.project("Keep me")
    client = tenant_a.key_client(["project:read"])

    listed = client.get("/api/v1/projects")
    assert listed.status_code == 200
    assert [p["name"] for p in listed.json()["results"]] == ["Keep me"]
    assert client.get(f"/api/v1/projects/{project.pk}").status_code == 200

    assert_error(client.post("/api/v1/projects", {"name": "New"}), 403, "missing_scope")
    assert_error(client.patch(f"/api/v1/projects/{project.pk}", {"name": "Changed"}), 403, "missing_scope")
    assert_error(client.delete(f"/api/v1/projects/{project.pk}"), 403, "missing_scope")

    with tenant_scope(tenant_a.organization):
        assert list(Project.objects.values_list("name", flat=True)) == ["Keep me"]


# --- owner rules --------------------------------------------------------------------------------


def test_admin_cannot_promote_anyone_to_owner(tenant_a):
    admin = tenant_a.client("admin")
    target = tenant_a.member("producer")

    assert_error(admin.patch(f"/api/v1/members/{membership_id(tenant_a, target)}", {"role": "owner"}),
                 403, "owner_required")
    assert_error(admin.patch(f"/api/v1/members/{membership_id(tenant_a, admin.user)}", {"role": "owner"}),
                 403, "owner_required")
    assert_error(admin.post("/api/v1/invitations", {"email": "boss@example.test", "role": "owner"}),
                 403, "owner_required")
    assert role_of(tenant_a, target) == "producer"
    assert role_of(tenant_a, admin.user) == "admin"


def test_admin_cannot_demote_or_remove_an_owner(tenant_a):
    admin = tenant_a.client("admin")
    owner_id = membership_id(tenant_a, tenant_a.owner)

    assert_error(admin.patch(f"/api/v1/members/{owner_id}", {"role": "viewer"}), 403, "owner_required")
    assert_error(admin.delete(f"/api/v1/members/{owner_id}"), 403, "owner_required")
    assert role_of(tenant_a, tenant_a.owner) == "owner"


def test_an_api_key_with_every_scope_cannot_touch_the_owner_role(tenant_a):
    client = tenant_a.key_client()
    owner_id = membership_id(tenant_a, tenant_a.owner)
    target_id = membership_id(tenant_a, tenant_a.member("admin"))

    assert_error(client.patch(f"/api/v1/members/{target_id}", {"role": "owner"}), 403, "owner_required")
    assert_error(client.patch(f"/api/v1/members/{owner_id}", {"role": "admin"}), 403, "owner_required")
    assert_error(client.delete(f"/api/v1/members/{owner_id}"), 403, "owner_required")
    assert role_of(tenant_a, tenant_a.owner) == "owner"


def test_the_last_owner_cannot_be_demoted_or_removed(tenant_a):
    owner = tenant_a.client("owner")
    owner_id = membership_id(tenant_a, tenant_a.owner)

    for role in ("admin", "producer", "reviewer", "viewer"):
        assert_error(owner.patch(f"/api/v1/members/{owner_id}", {"role": role}), 409, "last_owner")
    assert_error(owner.delete(f"/api/v1/members/{owner_id}"), 409, "last_owner")
    assert role_of(tenant_a, tenant_a.owner) == "owner"


def test_an_owner_adds_a_second_owner_then_steps_down(tenant_a):
    first = tenant_a.client("owner")
    second_user = tenant_a.member("admin")
    second = tenant_a.client(user=second_user)
    first_id, second_id = membership_id(tenant_a, tenant_a.owner), membership_id(tenant_a, second_user)

    promoted = first.patch(f"/api/v1/members/{second_id}", {"role": "owner"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "owner"

    stepped_down = first.patch(f"/api/v1/members/{first_id}", {"role": "admin"})
    assert stepped_down.status_code == 200 and stepped_down.json()["role"] == "admin"
    assert (role_of(tenant_a, tenant_a.owner), role_of(tenant_a, second_user)) == ("admin", "owner")

    # The former owner is an admin now, and the new owner is the last one.
    assert_error(first.patch(f"/api/v1/members/{second_id}", {"role": "admin"}), 403, "owner_required")
    assert_error(second.patch(f"/api/v1/members/{second_id}", {"role": "admin"}), 409, "last_owner")
    assert_error(second.delete(f"/api/v1/members/{second_id}"), 409, "last_owner")


def test_an_owner_may_leave_once_another_owner_exists(tenant_a):
    first = tenant_a.client("owner")
    second_user = tenant_a.member("owner")
    first_id = membership_id(tenant_a, tenant_a.owner)

    assert first.delete(f"/api/v1/members/{first_id}").status_code == 204
    assert role_of(tenant_a, tenant_a.owner) is None
    assert role_of(tenant_a, second_user) == "owner"


# --- API keys -----------------------------------------------------------------------------------


def test_a_key_creator_cannot_hand_out_scopes_it_does_not_hold(tenant_a):
    producer_like = tenant_a.key_client(sorted(ROLE_SCOPES[Role.PRODUCER] | {"apikeys:manage"}))

    refused = producer_like.post("/api/v1/api-keys", {"name": "Too much", "scopes": ["project:read", "org:manage"]})
    error = assert_error(refused, 400, "scope_not_held")
    assert "org:manage" in str(error["fields"]["scopes"])
    assert_error(producer_like.post("/api/v1/api-keys", {"name": "Too much", "scopes": ["members:manage"]}),
                 400, "scope_not_held")

    allowed = producer_like.post("/api/v1/api-keys", {"name": "Fine", "scopes": ["project:read", "project:write"]})
    assert allowed.status_code == 201 and allowed.json()["scopes"] == ["project:read", "project:write"]

    # A signed-in admin holds everything but org:manage, so it cannot mint an org:manage key.
    admin = tenant_a.client("admin")
    assert_error(admin.post("/api/v1/api-keys", {"name": "Escalate", "scopes": ["org:manage"]}),
                 400, "scope_not_held")
    with tenant_scope(tenant_a.organization):
        assert not ApiKey.objects.filter(name__in=["Too much", "Escalate"]).exists()


def test_a_created_key_is_shown_once_stored_hashed_and_works_until_revoked(tenant_a):
    owner = tenant_a.client("owner")
    created = owner.post("/api/v1/api-keys", {"name": "Partner", "scopes": ["project:read"]})
    assert created.status_code == 201, created.content
    body = created.json()
    plain, key_id = body["key"], body["id"]
    prefix, _, secret = plain.rpartition("_")
    assert plain.startswith("sk_") and body["prefix"] == prefix and body["last_four"] == plain[-4:]
    assert body["display"] == f"{prefix}_…{plain[-4:]}"

    # Never shown again: not in the list, not in the detail.
    listed = owner.get("/api/v1/api-keys")
    detail = owner.get(f"/api/v1/api-keys/{key_id}")
    for response in (listed, detail):
        assert response.status_code == 200
        assert secret not in response.content.decode()
    assert "key" not in detail.json()
    assert all("key" not in item for item in listed.json()["results"])

    # Stored only as its SHA-256: the secret part appears in no row of any table.
    with tenant_scope(tenant_a.organization):
        stored = ApiKey.objects.get(pk=key_id)
    assert stored.key_hash == hashlib.sha256(plain.encode()).hexdigest()
    with dangerously_unscoped(), connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            assert secret not in str(cursor.fetchall()), f"the key's secret is stored in {table}"

    assert stored.last_used_at is None
    partner = APIClient()
    partner.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    used = partner.get("/api/v1/projects", REMOTE_ADDR="198.51.100.4")
    assert used.status_code == 200
    with tenant_scope(tenant_a.organization):
        stored.refresh_from_db()
    assert stored.last_used_at is not None and stored.last_used_ip == "198.51.100.4"
    assert owner.get(f"/api/v1/api-keys/{key_id}").json()["last_used_at"] is not None

    assert owner.delete(f"/api/v1/api-keys/{key_id}").status_code == 204
    assert_error(partner.get("/api/v1/projects"), 401, "api_key_revoked")
    # Still listed, with its revocation time.
    assert owner.get(f"/api/v1/api-keys/{key_id}").json()["revoked_at"] is not None


# --- suspended organizations --------------------------------------------------------------------


def test_a_suspended_organization_is_refused_and_another_is_not(tenant_a, tenant_b):
    a_owner, a_viewer, a_key = tenant_a.client("owner"), tenant_a.client("viewer"), tenant_a.key_client()
    b_owner, b_key = tenant_b.client("owner"), tenant_b.key_client()

    organization_set_suspended(
        organization=tenant_a.organization, suspended=True, actor=Actor.system(), reason="unpaid"
    )

    for client in (a_owner, a_viewer, a_key):
        assert_error(client.get("/api/v1/projects"), 403, "organization_suspended")
        assert_error(client.get("/api/v1/organization"), 403, "organization_suspended")
        assert_error(client.post("/api/v1/projects", {"name": "While suspended"}), 403, "organization_suspended")
    for client in (b_owner, b_key):
        assert client.get("/api/v1/projects").status_code == 200
    assert b_owner.post("/api/v1/projects", {"name": "Business as usual"}).status_code == 201
    with tenant_scope(tenant_a.organization):
        assert not Project.objects.exists()

    organization_set_suspended(organization=tenant_a.organization, suspended=False, actor=Actor.system())
    assert a_owner.get("/api/v1/projects").status_code == 200
    assert a_key.get("/api/v1/projects").status_code == 200


# --- audit log ----------------------------------------------------------------------------------

IP = "203.0.113.9"


def _only(entries: list[dict], action: str) -> dict:
    matching = [entry for entry in entries if entry["action"] == action]
    assert len(matching) == 1, (action, matching)
    return matching[0]


def test_sensitive_actions_are_audited_with_actor_ip_and_changes(tenant_a):
    owner = tenant_a.client("owner")
    owner_email = tenant_a.owner.email
    moved = tenant_a.member("viewer")
    leaving = tenant_a.member("producer")

    project = owner.post("/api/v1/projects", {"name": "Audited", "description": "d"}, REMOTE_ADDR=IP).json()
    assert owner.patch("/api/v1/organization", {"name": "New name"}, REMOTE_ADDR=IP).status_code == 200
    assert owner.patch(f"/api/v1/members/{membership_id(tenant_a, moved)}", {"role": "reviewer"},
                       REMOTE_ADDR=IP).status_code == 200
    leaving_id = membership_id(tenant_a, leaving)
    assert owner.delete(f"/api/v1/members/{leaving_id}", REMOTE_ADDR=IP).status_code == 204
    key = owner.post("/api/v1/api-keys", {"name": "Audited key", "scopes": ["project:read"]}, REMOTE_ADDR=IP).json()
    assert owner.delete(f"/api/v1/api-keys/{key['id']}", REMOTE_ADDR=IP).status_code == 204

    entries = audit_entries(owner)
    for action in ("project.create", "organization.update", "member.role_change", "member.remove",
                   "apikey.create", "apikey.revoke"):
        entry = _only(entries, action)
        assert entry["actor"] == owner_email and entry["api_key"] is None, entry
        assert entry["ip_address"] == IP, entry

    project_entry = _only(entries, "project.create")
    assert project_entry["target_id"] == project["id"]
    assert project_entry["after"] == {"name": "Audited", "description": "d"}

    organization_entry = _only(entries, "organization.update")
    assert organization_entry["before"] == {"name": "Studio STUDIO-A"}
    assert organization_entry["after"] == {"name": "New name"}

    role_entry = _only(entries, "member.role_change")
    assert role_entry["target_id"] == membership_id(tenant_a, moved)
    assert (role_entry["before"], role_entry["after"]) == ({"role": "viewer"}, {"role": "reviewer"})

    removal = _only(entries, "member.remove")
    assert removal["target_id"] == leaving_id
    assert removal["before"] == {"user": leaving.email, "role": "producer"}

    created = _only(entries, "apikey.create")
    assert created["target_id"] == key["id"]
    assert created["after"] == {"name": "Audited key", "scopes": ["project:read"]}
    assert key["key"] not in str(entries), "the audit log must not hold the key"

    revoked = _only(entries, "apikey.revoke")
    assert (revoked["before"], revoked["after"]) == ({"active": True}, {"active": False})


def test_calls_made_with_a_key_are_audited_with_the_key_prefix(tenant_a):
    key, plain = tenant_a.key()
    partner = APIClient()
    partner.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")

    assert partner.post("/api/v1/projects", {"name": "From a partner"}, REMOTE_ADDR=IP).status_code == 201
    child = partner.post("/api/v1/api-keys", {"name": "Child", "scopes": ["project:read"]}, REMOTE_ADDR=IP).json()
    assert partner.delete(f"/api/v1/api-keys/{child['id']}", REMOTE_ADDR=IP).status_code == 204

    entries = [entry for entry in audit_entries(tenant_a.client("owner")) if entry["api_key"] is not None]
    assert sorted(entry["action"] for entry in entries) == ["apikey.create", "apikey.revoke", "project.create"]
    for entry in entries:
        assert entry["api_key"] == key.prefix, entry
        assert entry["actor"] == "" and entry["ip_address"] == IP, entry
    assert _only(entries, "project.create")["after"] == {"name": "From a partner", "description": ""}
    assert _only(entries, "apikey.create")["target_id"] == child["id"]
    # The key's own id filter finds exactly its three entries.
    by_key = audit_entries(tenant_a.client("owner"), api_key=str(key.pk))
    assert sorted(entry["action"] for entry in by_key) == ["apikey.create", "apikey.revoke", "project.create"]


def test_audit_log_action_and_since_filters(tenant_a):
    owner = tenant_a.client("owner")
    assert owner.post("/api/v1/projects", {"name": "Old"}).status_code == 201
    with tenant_scope(tenant_a.organization):
        # Everything so far (organization.create, project.create "Old") happened three days ago.
        AuditEntry.objects.update(created_at=timezone.now() - timedelta(days=3))
    assert owner.post("/api/v1/projects", {"name": "New"}).status_code == 201
    target = tenant_a.member("viewer")
    assert owner.patch(f"/api/v1/members/{membership_id(tenant_a, target)}", {"role": "reviewer"}).status_code == 200
    key = owner.post("/api/v1/api-keys", {"name": "K", "scopes": ["project:read"]}).json()
    assert owner.delete(f"/api/v1/api-keys/{key['id']}").status_code == 204

    role_changes = audit_entries(owner, action="member.role_change")
    assert [entry["action"] for entry in role_changes] == ["member.role_change"]

    projects = audit_entries(owner, action="project.create")
    assert sorted(entry["after"]["name"] for entry in projects) == ["New", "Old"]

    # A prefix ending in "." matches a family of actions.
    assert sorted(entry["action"] for entry in audit_entries(owner, action="apikey.")) == [
        "apikey.create", "apikey.revoke"
    ]
    assert audit_entries(owner, action="nothing.like.this") == []

    since = (timezone.now() - timedelta(days=1)).isoformat()
    recent = audit_entries(owner, since=since)
    assert sorted(entry["action"] for entry in recent) == [
        "apikey.create", "apikey.revoke", "member.role_change", "project.create"
    ]
    assert [entry["after"]["name"] for entry in recent if entry["action"] == "project.create"] == ["New"]

    recent_projects = audit_entries(owner, action="project.create", since=since)
    assert [entry["after"]["name"] for entry in recent_projects] == ["New"]

    old = audit_entries(owner, until=since)
    assert sorted(entry["action"] for entry in old) == ["organization.create", "project.create"]

    # Newest first.
    stamps = [datetime.fromisoformat(entry["created_at"]) for entry in audit_entries(owner)]
    assert stamps == sorted(stamps, reverse=True)


def test_audit_entries_never_cross_organizations(tenant_a, tenant_b):
    a_owner, b_owner = tenant_a.client("owner"), tenant_b.client("owner")
    a_project = a_owner.post("/api/v1/projects", {"name": "Secret A"}).json()
    assert a_owner.patch("/api/v1/organization", {"name": "A renamed"}).status_code == 200
    a_key = a_owner.post("/api/v1/api-keys", {"name": "A key", "scopes": ["project:read"]}).json()
    assert b_owner.post("/api/v1/projects", {"name": "Public B"}).status_code == 201

    a_entries = audit_entries(a_owner)
    b_entries = audit_entries(b_owner)
    a_ids = {entry["id"] for entry in a_entries}
    b_ids = {entry["id"] for entry in b_entries}
    assert a_ids and b_ids and not a_ids & b_ids
    assert "Secret A" not in str(b_entries) and "A renamed" not in str(b_entries)
    assert "Public B" not in str(a_entries)

    # Filters cannot reach across either.
    assert audit_entries(b_owner, target_id=a_project["id"]) == []
    assert audit_entries(b_owner, action="apikey.create") == []
    assert audit_entries(b_owner, api_key=a_key["id"]) == []
    assert audit_entries(b_owner, actor=tenant_a.owner.email) == []
    assert [entry["action"] for entry in audit_entries(b_owner, action="project.create")] == ["project.create"]

    # A's own key sees A's log only; it cannot ask for B's.
    a_key_client = tenant_a.key_client(["audit:read"])
    assert {entry["id"] for entry in audit_entries(a_key_client)} >= a_ids
    assert not {entry["id"] for entry in audit_entries(a_key_client)} & b_ids
    a_key_client.credentials(HTTP_AUTHORIZATION=a_key_client._credentials["HTTP_AUTHORIZATION"],
                             HTTP_X_ORGANIZATION=tenant_b.slug)
    assert not {entry["id"] for entry in audit_entries(a_key_client)} & b_ids
