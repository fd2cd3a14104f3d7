"""One `access_<thing>(actor, id)` per tenant-owned thing: the object, or the same NotFound for a
missing id and for another organization's; the API answers it as its JSON 404 and the portal as its
404 page, with the same words for both cases."""
from __future__ import annotations

import re
import uuid

import pytest

from accounts.audit import Actor
from accounts.models import ApiKey, Invitation, Membership
from accounts.selectors import access_api_key, access_invitation, access_member
from config.errors import NotFound
from config.tenancy import tenant_scope
from generation.selectors import access_job
from generation.webhooks import access_webhook
from projects.selectors import access_project
from rights.selectors import access_asset


def _things(tenant) -> dict:
    """One object of each kind in `tenant`'s organization, by its access helper."""
    from accounts import services as accounts_services
    from accounts.roles import SCOPES
    from generation.models import Job, Webhook
    from rights.models import Content

    project = tenant.project("Access")
    key, _ = tenant.key()
    with tenant_scope(tenant.organization):
        invitation, _ = accounts_services.invitation_create(
            organization=tenant.organization, email=f"guest@{tenant.slug}.test", role="viewer",
            actor=Actor(user=tenant.owner, scopes=frozenset(SCOPES)))
        job = Job.objects.create(organization=tenant.organization, project=project, topic="access",
                                 created_by=tenant.owner)
        webhook = Webhook.objects.create(organization=tenant.organization, url="https://hooks.example.com/x",
                                         events=["job.completed"], secret_encrypted="x")
        content = Content.objects.create(organization=tenant.organization, kind="image", sha256="0" * 64,
                                         created_by=tenant.owner)
        member = Membership.objects.get(organization=tenant.organization, user=tenant.owner)
    return {access_project: project, access_job: job, access_webhook: webhook, access_asset: content,
            access_member: member, access_invitation: invitation, access_api_key: key}


def test_each_thing_is_found_in_its_organization_and_nowhere_else(tenant_a, tenant_b):
    a_things, actor = _things(tenant_a), Actor(user=tenant_b.owner)
    assert {type(thing) for thing in a_things.values()} >= {Membership, Invitation, ApiKey}
    with tenant_scope(tenant_a.organization):
        for access, thing in a_things.items():
            assert access(Actor(user=tenant_a.owner), thing.pk) == thing
    with tenant_scope(tenant_b.organization):
        for access, thing in a_things.items():
            with pytest.raises(NotFound) as foreign:
                access(actor, thing.pk)
            with pytest.raises(NotFound) as missing:
                access(actor, uuid.uuid4() if isinstance(thing.pk, uuid.UUID) else 10**9)
            assert foreign.value.message == missing.value.message and foreign.value.status == 404


def test_the_api_and_the_portal_answer_the_same_404_for_foreign_and_missing(tenant_a, tenant_b):
    job = _things(tenant_a)[access_job]
    api = tenant_b.client()
    foreign, missing = api.get(f"/api/v1/jobs/{job.pk}"), api.get(f"/api/v1/jobs/{uuid.uuid4()}")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json() == {"error": {"code": "not_found", "message": "No such job.", "fields": {}}}
    portal = tenant_b.client()
    foreign, missing = portal.get(f"/jobs/{job.pk}/"), portal.get(f"/jobs/{uuid.uuid4()}/")
    assert foreign.status_code == missing.status_code == 404
    title = re.compile(rb"<title>(.*?)</title>", re.S)  # (the pages differ only in their nonces)
    assert title.search(foreign.content).group(1) == title.search(missing.content).group(1)
    assert b"<html" in foreign.content.lower()
