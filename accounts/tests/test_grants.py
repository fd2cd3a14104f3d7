"""Grants never exceed the granter: invitations, role changes and API keys all go through
`services.grant_check`, with the one error `scope_not_held`, through the API and the portal."""
from __future__ import annotations

import pytest

from accounts import services
from accounts.audit import Actor
from accounts.models import Invitation, Membership
from accounts.roles import ROLE_SCOPES, SCOPES, Role
from config.tenancy import tenant_scope
from accounts.tests.test_roles_api import assert_error, membership_id, role_of
from config.errors import DomainError

VIEWER_SCOPES = sorted(ROLE_SCOPES[Role.VIEWER])


def invitations_for(tenant, email) -> int:
    with tenant_scope(tenant.organization):
        return Invitation.objects.filter(email=email).count()


def test_a_members_manage_key_cannot_invite_an_admin_or_any_role_beyond_its_scopes(tenant_a):
    manager = tenant_a.key_client(["members:manage"])
    for role in ("admin", "producer", "reviewer", "viewer"):
        error = assert_error(manager.post("/api/v1/invitations", {"email": f"{role}@x.test", "role": role}),
                             400, "scope_not_held")
        assert set(error["fields"]) == {"role"}
        missing = sorted(ROLE_SCOPES[role] - {"members:manage"})
        assert error["fields"]["role"] == [f"not held: {', '.join(missing)}"]
        assert invitations_for(tenant_a, f"{role}@x.test") == 0

    # Holding everything a viewer has, it may invite viewers, and still no one above.
    viewer_level = tenant_a.key_client(["members:manage", *VIEWER_SCOPES])
    assert viewer_level.post("/api/v1/invitations", {"email": "v@x.test", "role": "viewer"}).status_code == 201
    error = assert_error(viewer_level.post("/api/v1/invitations", {"email": "a@x.test", "role": "admin"}),
                         400, "scope_not_held")
    assert "apikeys:manage" in error["fields"]["role"][0]
    assert invitations_for(tenant_a, "a@x.test") == 0


def test_a_members_manage_key_cannot_promote_nor_demote_nor_remove_above_itself(tenant_a):
    viewer, admin = tenant_a.member("viewer"), tenant_a.member("admin")
    manager = tenant_a.key_client(["members:manage", "members:read", *VIEWER_SCOPES])

    assert_error(manager.patch(f"/api/v1/members/{membership_id(tenant_a, viewer)}", {"role": "admin"}),
                 400, "scope_not_held")
    assert_error(manager.patch(f"/api/v1/members/{membership_id(tenant_a, viewer)}", {"role": "producer"}),
                 400, "scope_not_held")
    assert role_of(tenant_a, viewer) == "viewer"
    # Taking power away from someone who holds more than the key is a grant above it too.
    assert_error(manager.patch(f"/api/v1/members/{membership_id(tenant_a, admin)}", {"role": "viewer"}),
                 400, "scope_not_held")
    assert_error(manager.delete(f"/api/v1/members/{membership_id(tenant_a, admin)}"), 400, "scope_not_held")
    assert role_of(tenant_a, admin) == "admin"
    # Within its reach it works.
    other_viewer = tenant_a.member("viewer")
    assert manager.delete(f"/api/v1/members/{membership_id(tenant_a, other_viewer)}").status_code == 204


def test_admins_and_owners_still_invite_promote_and_mint_what_they_hold(tenant_a):
    admin = tenant_a.client("admin")
    assert admin.post("/api/v1/invitations", {"email": "new-admin@x.test", "role": "admin"}).status_code == 201
    producer = tenant_a.member("producer")
    promoted = admin.patch(f"/api/v1/members/{membership_id(tenant_a, producer)}", {"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    # The owner role stays the owners' (owner rules come first, with their own code).
    assert_error(admin.post("/api/v1/invitations", {"email": "o@x.test", "role": "owner"}), 403, "owner_required")

    owner = tenant_a.client("owner")
    assert owner.post("/api/v1/invitations", {"email": "co-owner@x.test", "role": "owner"}).status_code == 201
    assert owner.post("/api/v1/api-keys", {"name": "all", "scopes": sorted(SCOPES)}).status_code == 201
    assert owner.patch(f"/api/v1/members/{membership_id(tenant_a, producer)}", {"role": "viewer"}).status_code == 200


def test_a_key_minted_by_a_key_stays_within_it(tenant_a):
    minter = tenant_a.key_client(["apikeys:manage", "project:read"])
    assert minter.post("/api/v1/api-keys", {"name": "ok", "scopes": ["project:read"]}).status_code == 201
    error = assert_error(minter.post("/api/v1/api-keys", {"name": "no", "scopes": ["project:read", "job:read"]}),
                         400, "scope_not_held")
    assert error["fields"] == {"scopes": ["not held: job:read"]}


@pytest.mark.parametrize("grant", ["invite", "change_role", "api_key"])
def test_every_grant_refuses_with_the_same_code_in_the_services(tenant_a, grant):
    """One rule for the three grants: an actor narrowed to members and keys management (a portal
    session or key holding only those) is refused the same way, whatever it grants."""
    actor = Actor(user=tenant_a.owner, scopes=frozenset({"members:manage", "apikeys:manage"}))
    target = tenant_a.member("viewer")
    with tenant_scope(tenant_a.organization), pytest.raises(DomainError) as refused:
        if grant == "invite":
            services.invitation_create(organization=tenant_a.organization, email="z@x.test", role="reviewer",
                                       actor=actor)
        elif grant == "change_role":
            services.membership_change_role(membership=Membership.objects.get(user=target), role="reviewer",
                                            actor=actor)
        else:
            services.api_key_create(organization=tenant_a.organization, name="k", scopes=["job:approve"],
                                    actor=actor)
    assert refused.value.code == "scope_not_held" and refused.value.status == 400
    assert "job:approve" in str(refused.value.fields)


def test_the_portal_shows_the_refusal_on_the_invitation_form(client, tenant_a, settings, monkeypatch):
    """No built-in role lacks a scope of a lower one, so the portal's refusal is shown with a
    narrowed admin role: the view puts the service's message on the role field, answers 400,
    and creates nothing."""
    monkeypatch.setitem(ROLE_SCOPES, Role.ADMIN, ROLE_SCOPES[Role.ADMIN] - {"job:approve"})
    admin = tenant_a.member("admin")
    client.force_login(admin)
    response = client.post("/team/invitations/", {"email": "rev@x.test", "role": "reviewer"})
    assert response.status_code == 400
    assert "not held: job:approve" in response.content.decode()
    assert invitations_for(tenant_a, "rev@x.test") == 0

    viewer = tenant_a.member("viewer")
    with tenant_scope(tenant_a.organization):
        viewer_membership = Membership.objects.get(user=viewer)
    page = client.post(f"/team/members/{viewer_membership.pk}/role/", {"role": "reviewer"}, follow=True)
    assert "You cannot grant scopes you do not hold yourself." in page.content.decode()
    assert role_of(tenant_a, viewer) == "viewer"
