"""The operators' admin sees every tenant, and every change it makes is audited."""
import pytest
from django.urls import reverse

from accounts.models import ApiKey, AuditEntry, Membership, Organization, User
from config.tenancy import dangerously_unscoped, tenant_scope


@pytest.fixture
def operator_client(client, db):
    operator = User.objects.create_superuser(email="ops@platform.test", password=None)
    client.force_login(operator)
    return client


def test_every_admin_page_loads_unscoped_across_tenants(operator_client, tenant_a, tenant_b):
    tenant_a.project("Alpha"), tenant_b.project("Beta")
    tenant_a.key(), tenant_b.key()
    for model in ("organization", "user", "membership", "invitation", "apikey", "auditentry"):
        response = operator_client.get(reverse(f"admin:accounts_{model}_changelist"))
        assert response.status_code == 200, model
    chain = operator_client.get(reverse("admin:rights_chainstate_changelist")).content.decode()
    assert "Chain: " in chain and "ok=True" in chain and "registrations waiting to be anchored: 0" in chain
    for model in ("content", "registration", "registrationbatch"):
        assert operator_client.get(reverse(f"admin:rights_{model}_changelist")).status_code == 200
    for model in ("job", "step", "webhook", "webhookdelivery"):
        assert operator_client.get(reverse(f"admin:generation_{model}_changelist")).status_code == 200
    projects = operator_client.get(reverse("admin:projects_project_changelist")).content.decode()
    assert "Alpha" in projects and "Beta" in projects
    with dangerously_unscoped():
        membership = Membership.objects.filter(organization=tenant_a.organization).first()
        key = ApiKey.objects.filter(organization=tenant_b.organization).first()
    assert operator_client.get(reverse("admin:accounts_membership_change", args=[membership.pk])).status_code == 200
    page = operator_client.get(reverse("admin:accounts_apikey_change", args=[key.pk])).content.decode()
    assert key.key_hash not in page


def test_admin_search_and_filters(operator_client, tenant_a, tenant_b):
    page = operator_client.get(reverse("admin:accounts_organization_changelist"), {"q": "studio-b"}).content.decode()
    assert "studio-b" in page and "studio-a" not in page
    page = operator_client.get(reverse("admin:accounts_membership_changelist"), {"role__exact": "owner"})
    assert page.status_code == 200 and "owner@studio-a.test" in page.content.decode()


def test_suspend_action_locks_out_users_and_keys_and_is_audited(operator_client, tenant_a, tenant_b):
    member_a, key_a, member_b = tenant_a.client("producer"), tenant_a.key_client(), tenant_b.client("producer")
    assert member_a.get("/api/v1/projects").status_code == 200
    response = operator_client.post(
        reverse("admin:accounts_organization_changelist"),
        {"action": "suspend", "_selected_action": [tenant_a.organization.pk]},
    )
    assert response.status_code == 302
    tenant_a.organization.refresh_from_db()
    assert tenant_a.organization.is_suspended
    for caller in (member_a, key_a):
        denied = caller.get("/api/v1/projects")
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "organization_suspended"
    assert member_b.get("/api/v1/projects").status_code == 200
    portal = member_a.get("/")
    assert portal.status_code == 403 and "suspended" in portal.content.decode()
    with tenant_scope(tenant_a.organization):
        entry = AuditEntry.objects.get(action="organization.suspend")
    assert entry.actor.email == "ops@platform.test" and entry.after["is_suspended"] is True


def test_revoke_action_revokes_keys(operator_client, tenant_a):
    key, plain = tenant_a.key()
    operator_client.post(reverse("admin:accounts_apikey_changelist"), {"action": "revoke", "_selected_action": [key.pk]})
    with tenant_scope(tenant_a.organization):
        key.refresh_from_db()
        assert AuditEntry.objects.filter(action="apikey.revoke", target_id=str(key.pk)).exists()
    assert key.revoked_at is not None
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert api.get("/api/v1/projects").status_code == 401


def test_admin_edit_is_audited_with_before_and_after(operator_client, tenant_a):
    organization = tenant_a.organization
    response = operator_client.post(
        reverse("admin:accounts_organization_change", args=[organization.pk]),
        {"name": "Renamed Studio", "slug": organization.slug, "public_name": organization.public_name,
         "suspended_reason": ""},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with tenant_scope(organization):
        entry = AuditEntry.objects.get(action="admin.organization.change")
    assert entry.before["name"] == "Studio STUDIO-A" and entry.after["name"] == "Renamed Studio"
    assert entry.actor.email == "ops@platform.test"


def test_admin_adds_a_membership_to_a_chosen_organization(operator_client, tenant_a, tenant_b):
    person = User.objects.create_user(email="new@person.test", password=None)
    response = operator_client.post(
        reverse("admin:accounts_membership_add"),
        {"organization": tenant_b.organization.pk, "user": person.pk, "role": "viewer"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    with tenant_scope(tenant_b.organization):
        assert Membership.objects.get(user=person).role == "viewer"
        assert AuditEntry.objects.filter(action="admin.membership.add").exists()


def test_non_staff_members_cannot_open_the_admin(client, tenant_a):
    client.force_login(tenant_a.owner)
    response = client.get(reverse("admin:accounts_organization_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
