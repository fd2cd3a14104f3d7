"""Portal dashboard, team pages (members, invitations, API keys, webhooks and their delivery log,
audit log), password reset and error pages: rendering, roles, tenancy and query counts."""
from __future__ import annotations

import re
import socket
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import services
from accounts.audit import Actor
from accounts.models import ApiKey, AuditEntry, Invitation, Membership, User
from config.tenancy import tenant_scope
from generation.models import GenerationPolicy, Job, JobStatus, Webhook, WebhookDelivery

PASSWORD = "correct horse battery staple"


@pytest.fixture
def fake_dns(monkeypatch):
    """Names in the table resolve to the address given; webhook URLs are then checked offline."""
    table = {"hooks.example.test": "93.184.216.34", "intranet.example.test": "10.0.0.5"}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def signed_in(client, user):
    client.force_login(user)
    return client


def make_jobs(tenant, project, count, status=JobStatus.COMPLETED, label="Topic"):
    with tenant_scope(tenant.organization):
        for number in range(count):
            Job.objects.create(organization=tenant.organization, project=project, topic=f"{label} {number}",
                               status=status, created_by=tenant.owner, cost=Decimal("1.25"),
                               estimated_cost=Decimal("1.25"))


def make_registrations(tenant, count, label="RG"):
    from rights.models import Content, Registration

    with tenant_scope(tenant.organization):
        for number in range(count):
            content = Content.objects.create(
                organization=tenant.organization, content_id=f"{label}{number:06d}", kind="video",
                source="upload", title=f"{label} {number}", sha256=f"{label}{number}".ljust(64, "0"))
            Registration.objects.create(organization=tenant.organization, content=content, leaf=f"0x{number:064x}",
                                        status="confirmed" if number % 2 else "pending")


def queries(client, url) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(captured), response


# --- dashboard -----------------------------------------------------------------------------------


def test_dashboard_shows_jobs_spend_registrations_projects_and_links(client, tenant_a, tenant_b):
    project = tenant_a.project("Alpha trailer")
    make_jobs(tenant_a, project, 2, label="Lighthouse")
    make_jobs(tenant_a, project, 1, status=JobStatus.IMAGE_GENERATION, label="Running")
    make_registrations(tenant_a, 3)
    with tenant_scope(tenant_a.organization):
        GenerationPolicy.objects.create(organization=tenant_a.organization, monthly_budget=Decimal("10"))
    make_jobs(tenant_b, tenant_b.project("Beta secret"), 1, label="Bravo topic")
    page = signed_in(client, tenant_a.member("producer")).get("/").content.decode()
    assert "Alpha trailer" in page and "Lighthouse 0" in page and "Running 0" in page
    assert "Beta secret" not in page and "Bravo topic" not in page
    assert 'hx-trigger="every 5s"' in page and 'id="recent-jobs"' in page and 'aria-live="polite"' in page
    assert "Drawing frames" in page and "<progress" in page
    # 3 jobs of 1.25: 3.75 of a 10.00 budget.
    assert 'id="stat-spend"' in page and "3.75" in page and "10.00" in page and "6.25" in page
    assert 'id="stat-registrations"' in page and re.search(r'<span class="figure">3</span> registrations', page)
    assert 'id="quick-new-job"' in page and reverse("jobs:job-new") in page


def test_dashboard_hides_what_the_role_cannot_use(client, tenant_a):
    page = signed_in(client, tenant_a.member("viewer")).get("/").content.decode()
    assert 'id="quick-new-job"' not in page and 'id="stat-spend"' not in page
    assert "No jobs yet." in page and "Start a job" not in page
    assert "No projects yet." in page


def test_dashboard_jobs_fragment_is_live_and_answers_204_when_nothing_changed(client, tenant_a, tenant_b):
    project = tenant_a.project()
    make_jobs(tenant_a, project, 1, status=JobStatus.VIDEO_GENERATION, label="Live")
    make_jobs(tenant_b, tenant_b.project(), 1, label="Bravo topic")
    client = signed_in(client, tenant_a.member("viewer"))
    fragment = client.get("/dashboard/jobs/", HTTP_HX_REQUEST="true")
    body = fragment.content.decode()
    assert fragment.status_code == 200 and "Live 0" in body and "Bravo topic" not in body
    assert "<html" not in body
    version = re.search(r'data-version="([0-9a-f]+)"', body).group(1)
    assert client.get(f"/dashboard/jobs/?v={version}").status_code == 204
    with tenant_scope(tenant_a.organization):
        Job.objects.update(status=JobStatus.COMPLETED, progress=1.0)
    changed = client.get(f"/dashboard/jobs/?v={version}")
    assert changed.status_code == 200 and "Completed" in changed.content.decode()


def test_dashboard_query_count_is_fixed(client, tenant_a):
    project = tenant_a.project("First")
    make_jobs(tenant_a, project, 2)
    make_registrations(tenant_a, 2)
    client = signed_in(client, tenant_a.owner)
    few, _ = queries(client, "/")
    for number in range(25):
        tenant_a.project(f"Project {number}")
    make_jobs(tenant_a, project, 25, status=JobStatus.COMPOSING, label="More")
    make_registrations(tenant_a, 25, label="MR")
    many, response = queries(client, "/")
    assert "More 24" in response.content.decode()
    assert few == many <= 15, (few, many)
    few_fragment, _ = queries(client, "/dashboard/jobs/")
    assert few_fragment <= 8


# --- members ---------------------------------------------------------------------------------------


def test_team_page_lists_members_and_invitations_of_the_organization_only(client, tenant_a, tenant_b):
    producer = tenant_a.member("producer")
    tenant_b.member("admin")
    with tenant_scope(tenant_a.organization):
        services.invitation_create(organization=tenant_a.organization, email="soon@a.test", role="reviewer",
                                   actor=Actor(user=tenant_a.owner))
    with tenant_scope(tenant_b.organization):
        services.invitation_create(organization=tenant_b.organization, email="theirs@b.test", role="viewer",
                                   actor=Actor(user=tenant_b.owner))
    page = signed_in(client, producer).get("/team/").content.decode()
    assert tenant_a.owner.email in page and producer.email in page and "soon@a.test" in page
    assert "@studio-b.test" not in page and "theirs@b.test" not in page
    # A producer holds members:read only: no forms, no action buttons, no tabs it can't open.
    assert 'id="invite-form"' not in page and "Change role" not in page and "Revoke" not in page
    assert "/team/api-keys/" not in page and "/team/audit/" not in page


def test_admin_changes_a_role_and_removes_a_member(client, tenant_a):
    admin = tenant_a.member("admin")
    viewer = tenant_a.member("viewer")
    client = signed_in(client, admin)
    page = client.get("/team/").content.decode()
    with tenant_scope(tenant_a.organization):
        membership = Membership.objects.get(user=viewer)
    assert f'id="member-{membership.pk}"' in page and 'id="invite-form"' in page
    response = client.post(f"/team/members/{membership.pk}/role/", {"role": "producer"}, follow=True)
    assert "is now Producer" in response.content.decode()
    with tenant_scope(tenant_a.organization):
        assert Membership.objects.get(pk=membership.pk).role == "producer"
        assert AuditEntry.objects.filter(action="member.role_change", actor=admin).exists()
    response = client.post(f"/team/members/{membership.pk}/remove/", follow=True)
    assert "was removed" in response.content.decode()
    with tenant_scope(tenant_a.organization):
        assert not Membership.objects.filter(pk=membership.pk).exists()


def test_owner_rules_are_the_services(client, tenant_a):
    admin = tenant_a.member("admin")
    client = signed_in(client, admin)
    with tenant_scope(tenant_a.organization):
        owner = Membership.objects.get(user=tenant_a.owner)
        me = Membership.objects.get(user=admin)
    refused = client.post(f"/team/members/{me.pk}/role/", {"role": "owner"}, follow=True).content.decode()
    assert "Only an owner can grant, change or remove the owner role." in refused
    client.post(f"/team/members/{owner.pk}/remove/")
    signed_in(client, tenant_a.owner)
    last = client.post(f"/team/members/{owner.pk}/role/", {"role": "admin"}, follow=True).content.decode()
    assert "An organization always keeps an owner." in last
    with tenant_scope(tenant_a.organization):
        assert Membership.objects.get(pk=owner.pk).role == "owner"
        assert Membership.objects.get(pk=me.pk).role == "admin"


def test_viewer_forged_team_posts_are_refused(client, tenant_a):
    viewer = tenant_a.member("viewer")
    producer = tenant_a.member("producer")
    with tenant_scope(tenant_a.organization):
        target = Membership.objects.get(user=producer)
        invitation, _ = services.invitation_create(organization=tenant_a.organization, email="x@a.test",
                                                   role="viewer", actor=Actor(user=tenant_a.owner))
        key, _ = services.api_key_create(organization=tenant_a.organization, name="k", scopes=["job:read"],
                                         actor=Actor(user=tenant_a.owner, scopes=frozenset({"job:read"})))
        hook = Webhook.objects.create(organization=tenant_a.organization, url="https://hooks.example.test/h",
                                      events=["job.completed"], secret_encrypted="x")
    client = signed_in(client, viewer)
    posts = [
        (f"/team/members/{target.pk}/role/", {"role": "viewer"}),
        (f"/team/members/{target.pk}/remove/", {}),
        ("/team/invitations/", {"email": "forged@a.test", "role": "admin"}),
        (f"/team/invitations/{invitation.pk}/revoke/", {}),
        ("/team/api-keys/", {"name": "forged", "scopes": ["job:read"]}),
        (f"/team/api-keys/{key.pk}/revoke/", {}),
        ("/team/webhooks/", {"url": "https://hooks.example.test/x", "events": ["job.completed"]}),
        (f"/team/webhooks/{hook.pk}/edit/", {"url": "https://hooks.example.test/x", "events": ["job.failed"]}),
        (f"/team/webhooks/{hook.pk}/delete/", {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    for url in ("/team/api-keys/", "/team/webhooks/", f"/team/webhooks/{hook.pk}/", "/team/audit/"):
        assert client.get(url).status_code == 403, url
    with tenant_scope(tenant_a.organization):
        assert Membership.objects.get(pk=target.pk).role == "producer"
        assert Invitation.objects.get(pk=invitation.pk).status == "pending"
        assert not Invitation.objects.filter(email="forged@a.test").exists()
        assert ApiKey.objects.get(pk=key.pk).revoked_at is None and ApiKey.objects.count() == 1
        assert Webhook.objects.get(pk=hook.pk).events == ["job.completed"] and Webhook.objects.count() == 1


def test_other_organizations_objects_are_404(client, tenant_a, tenant_b):
    b_member = tenant_b.member("viewer")
    with tenant_scope(tenant_b.organization):
        b_membership = Membership.objects.get(user=b_member)
        b_invitation, _ = services.invitation_create(organization=tenant_b.organization, email="y@b.test",
                                                     role="viewer", actor=Actor(user=tenant_b.owner))
        b_key, _ = services.api_key_create(organization=tenant_b.organization, name="theirs", scopes=["job:read"],
                                           actor=Actor(user=tenant_b.owner, scopes=frozenset({"job:read"})))
        b_hook = Webhook.objects.create(organization=tenant_b.organization, url="https://hooks.example.test/b",
                                        events=["job.completed"], secret_encrypted="x")
    client = signed_in(client, tenant_a.owner)
    for url in (f"/team/members/{b_membership.pk}/role/", f"/team/members/{b_membership.pk}/remove/",
                f"/team/invitations/{b_invitation.pk}/revoke/", f"/team/api-keys/{b_key.pk}/revoke/",
                f"/team/webhooks/{b_hook.pk}/edit/", f"/team/webhooks/{b_hook.pk}/delete/"):
        assert client.post(url, {"role": "owner"}).status_code == 404, url
    for url in (f"/team/webhooks/{b_hook.pk}/", f"/team/webhooks/{b_hook.pk}/edit/"):
        assert client.get(url).status_code == 404, url
    for url in ("/team/", "/team/api-keys/", "/team/webhooks/", "/team/audit/"):
        body = client.get(url).content.decode()
        assert "@studio-b.test" not in body and "theirs" not in body and "hooks.example.test/b" not in body, url
    with tenant_scope(tenant_b.organization):
        assert Membership.objects.get(pk=b_membership.pk).role == "viewer"
        assert Invitation.objects.get(pk=b_invitation.pk).status == "pending"
        assert ApiKey.objects.get(pk=b_key.pk).revoked_at is None
        assert Webhook.objects.filter(pk=b_hook.pk).exists()


def test_team_page_query_count_is_fixed(client, tenant_a):
    client = signed_in(client, tenant_a.owner)

    def invite(count, start):
        with tenant_scope(tenant_a.organization):
            for number in range(start, start + count):
                services.invitation_create(organization=tenant_a.organization, email=f"i{number}@a.test",
                                           role="viewer", actor=Actor(user=tenant_a.owner))

    tenant_a.member("viewer")
    invite(2, 0)
    few, _ = queries(client, "/team/")
    for _ in range(25):
        tenant_a.member("producer")
    invite(25, 100)
    many, response = queries(client, "/team/")
    assert response.content.decode().count('<tr id="member-') == 25
    assert few == many <= 10, (few, many)


# --- invitations -----------------------------------------------------------------------------------


def test_invitation_link_is_shown_once_and_opens_the_invitation(client, tenant_a, mailoutbox,
                                                                django_capture_on_commit_callbacks):
    client = signed_in(client, tenant_a.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/team/invitations/", {"email": "New@Person.test", "role": "reviewer"})
    body = response.content.decode()
    assert response.status_code == 200 and 'id="invitation-link"' in body
    link = re.search(r'id="invitation-link">([^<]+)<', body).group(1)
    path = link[link.index("/invitations/"):]
    assert len(mailoutbox) == 1 and path in mailoutbox[0].body  # the same link the email carries
    assert 'id="invitation-link"' not in client.get("/team/").content.decode()
    assert "new@person.test" in client.get("/team/").content.decode()
    client.logout()
    assert "Join Studio STUDIO-A" in client.get(path).content.decode()
    # Inviting the same address again is refused on the form.
    signed_in(client, tenant_a.owner)
    again = client.post("/team/invitations/", {"email": "new@person.test", "role": "viewer"})
    assert again.status_code == 400 and "A pending invitation exists for this email." in again.content.decode()
    assert 'id="invitation-link"' not in again.content.decode()


def test_invitation_form_errors_and_revoke(client, tenant_a):
    admin = tenant_a.member("admin")
    client = signed_in(client, admin)
    bad = client.post("/team/invitations/", {"email": "not an email", "role": "viewer"})
    assert bad.status_code == 400 and "errorlist" in bad.content.decode()
    owner_invite = client.post("/team/invitations/", {"email": "boss@a.test", "role": "owner"})
    assert owner_invite.status_code == 400 and "Only an owner can invite another owner." in owner_invite.content.decode()
    client.post("/team/invitations/", {"email": "later@a.test", "role": "viewer"})
    with tenant_scope(tenant_a.organization):
        invitation = Invitation.objects.get(email="later@a.test")
    response = client.post(f"/team/invitations/{invitation.pk}/revoke/", follow=True)
    assert "was revoked" in response.content.decode()
    with tenant_scope(tenant_a.organization):
        assert Invitation.objects.get(pk=invitation.pk).status == "revoked"
    again = client.post(f"/team/invitations/{invitation.pk}/revoke/", follow=True)
    assert "The invitation is revoked." in again.content.decode()


# --- API keys ----------------------------------------------------------------------------------------


def test_api_key_is_shown_once_works_and_can_be_revoked(client, tenant_a):
    admin = tenant_a.member("admin")
    client = signed_in(client, admin)
    page = client.get("/team/api-keys/").content.decode()
    assert 'id="api-key-form"' in page and "org:manage" not in page  # an admin can't hand out org:manage
    response = client.post("/team/api-keys/", {"name": "Render farm", "scopes": ["project:read", "job:read"]})
    body = response.content.decode()
    plain = re.search(r'id="api-key-plain">([^<]+)<', body).group(1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert api.get("/api/v1/projects").status_code == 200
    listed = client.get("/team/api-keys/").content.decode()
    assert "Render farm" in listed and plain not in listed and 'id="api-key-plain"' not in listed
    with tenant_scope(tenant_a.organization):
        key = ApiKey.objects.get(name="Render farm")
    assert key.scopes == ["job:read", "project:read"] and f"{key.prefix}_…{key.last_four}" in listed
    response = client.post(f"/team/api-keys/{key.pk}/revoke/", follow=True)
    assert "was revoked" in response.content.decode()
    assert api.get("/api/v1/projects").status_code == 401


def test_api_key_scopes_beyond_the_creators_are_refused(client, tenant_a):
    client = signed_in(client, tenant_a.member("admin"))
    response = client.post("/team/api-keys/", {"name": "Too much", "scopes": ["org:manage"]})
    assert response.status_code == 400 and 'id="api-key-plain"' not in response.content.decode()
    empty = client.post("/team/api-keys/", {"name": "Nothing"})
    assert empty.status_code == 400
    with tenant_scope(tenant_a.organization):
        assert not ApiKey.objects.exists()


def test_api_key_list_query_count_is_fixed(client, tenant_a):
    client = signed_in(client, tenant_a.owner)
    for _ in range(2):
        tenant_a.key(["job:read"])
    few, _ = queries(client, "/team/api-keys/")
    for _ in range(25):
        tenant_a.key(["job:read"])
    many, _ = queries(client, "/team/api-keys/")
    assert few == many <= 8, (few, many)


# --- webhooks ----------------------------------------------------------------------------------------


def test_webhook_create_shows_the_secret_once_edit_and_delete(client, tenant_a, fake_dns):
    client = signed_in(client, tenant_a.member("admin"))
    response = client.post("/team/webhooks/", {"url": "https://hooks.example.test/in",
                                               "events": ["job.completed", "content.registered"], "is_active": "on"})
    body = response.content.decode()
    assert response.status_code == 200
    secret = re.search(r'id="webhook-secret">([^<]+)<', body).group(1)
    assert secret.startswith("whsec_")
    listed = client.get("/team/webhooks/").content.decode()
    assert "https://hooks.example.test/in" in listed and secret not in listed
    with tenant_scope(tenant_a.organization):
        hook = Webhook.objects.get()
    assert hook.events == ["job.completed", "content.registered"] and hook.is_active
    edit = client.get(f"/team/webhooks/{hook.pk}/edit/").content.decode()
    assert 'value="https://hooks.example.test/in"' in edit
    response = client.post(f"/team/webhooks/{hook.pk}/edit/", {"url": "https://hooks.example.test/v2",
                                                               "events": ["job.failed"]})
    assert response.status_code == 302 and response["Location"] == f"/team/webhooks/{hook.pk}/"
    with tenant_scope(tenant_a.organization):
        hook.refresh_from_db()
    assert (hook.url, hook.events, hook.is_active) == ("https://hooks.example.test/v2", ["job.failed"], False)
    client.post(f"/team/webhooks/{hook.pk}/delete/")
    with tenant_scope(tenant_a.organization):
        assert not Webhook.objects.exists()
        assert AuditEntry.objects.filter(action="webhook.delete").exists()


def test_webhook_to_a_private_address_is_refused_on_the_form(client, tenant_a, fake_dns):
    client = signed_in(client, tenant_a.owner)
    for url in ("https://intranet.example.test/hook", "http://127.0.0.1:8000/x", "http://localhost/x"):
        response = client.post("/team/webhooks/", {"url": url, "events": ["job.completed"]})
        body = response.content.decode()
        assert response.status_code == 400 and "webhook-secret" not in body, url
        assert "private or reserved address" in body or "cannot be resolved" in body, url
    no_events = client.post("/team/webhooks/", {"url": "https://hooks.example.test/in"})
    assert no_events.status_code == 400
    with tenant_scope(tenant_a.organization):
        assert not Webhook.objects.exists()


def make_deliveries(tenant, hook, count, status="delivered"):
    with tenant_scope(tenant.organization):
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(organization=tenant.organization, webhook=hook, event="job.completed", status=status,
                            attempts=1, last_status_code=200 if status == "delivered" else 500)
            for _ in range(count))


def test_webhook_delivery_log_filters_and_has_a_fixed_query_count(client, tenant_a):
    with tenant_scope(tenant_a.organization):
        hook = Webhook.objects.create(organization=tenant_a.organization, url="https://hooks.example.test/h",
                                      events=["job.completed"], secret_encrypted="x")
    client = signed_in(client, tenant_a.owner)
    empty = client.get(f"/team/webhooks/{hook.pk}/").content.decode()
    assert 'id="deliveries-empty"' in empty
    make_deliveries(tenant_a, hook, 2)
    few, _ = queries(client, f"/team/webhooks/{hook.pk}/")
    make_deliveries(tenant_a, hook, 25)
    make_deliveries(tenant_a, hook, 3, status="failed")
    many, response = queries(client, f"/team/webhooks/{hook.pk}/")
    assert response.content.decode().count('<tr id="delivery-') == 25
    assert few == many <= 9, (few, many)
    failed = client.get(f"/team/webhooks/{hook.pk}/?status=failed").content.decode()
    assert failed.count('<tr id="delivery-') == 3 and "HTTP 500" in failed


def test_webhook_list_query_count_is_fixed(client, tenant_a):
    def hooks(count, start):
        with tenant_scope(tenant_a.organization):
            for number in range(start, start + count):
                Webhook.objects.create(organization=tenant_a.organization, url=f"https://hooks.example.test/{number}",
                                       events=["job.completed"], secret_encrypted="x", created_by=tenant_a.owner)

    client = signed_in(client, tenant_a.owner)
    hooks(2, 0)
    few, _ = queries(client, "/team/webhooks/")
    hooks(18, 100)  # an organization has at most 20
    many, _ = queries(client, "/team/webhooks/")
    assert few == many <= 8, (few, many)


# --- audit log -----------------------------------------------------------------------------------------


def test_audit_log_filters_by_action_and_actor_and_has_a_fixed_query_count(client, tenant_a, tenant_b):
    admin = tenant_a.member("admin")
    with tenant_scope(tenant_b.organization):
        services.invitation_create(organization=tenant_b.organization, email="bravo@b.test", role="viewer",
                                   actor=Actor(user=tenant_b.owner))
    client = signed_in(client, tenant_a.owner)
    few, _ = queries(client, "/team/audit/")

    def invite(count, start, actor):
        with tenant_scope(tenant_a.organization):
            for number in range(start, start + count):
                services.invitation_create(organization=tenant_a.organization, email=f"a{number}@a.test",
                                           role="viewer", actor=Actor(user=actor))

    invite(20, 0, tenant_a.owner)
    invite(10, 100, admin)
    many, response = queries(client, "/team/audit/")
    body = response.content.decode()
    assert few == many <= 8, (few, many)
    assert "bravo@b.test" not in body and "invitation.create" in body
    by_admin = client.get("/team/audit/", {"actor": admin.email}).content.decode()
    assert by_admin.count("a1") >= 1 and "a0@a.test" not in by_admin and "a100@a.test" in by_admin
    by_prefix = client.get("/team/audit/", {"action": "organization."}).content.decode()
    assert "organization.create" in by_prefix and "invitation.create" not in by_prefix
    assert client.get("/team/audit/", {"actor": "not an email"}).status_code == 200


# --- password reset ------------------------------------------------------------------------------------


def test_password_reset_by_email_link(client, db):
    user = User.objects.create_user(email="forgetful@a.test", password="an old password 1")
    login = client.get("/login/").content.decode()
    assert 'href="/password-reset/"' in login and "Forgot your password?" in login
    response = client.post("/password-reset/", {"email": "Forgetful@a.test"})
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent/"
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/password-reset/confirm/\?\S+)", mail.outbox[0].body).group(1)
    landing = client.get(link)
    assert landing.status_code == 302 and "token=set-password" in landing["Location"] and "uid=" in landing["Location"]
    form = client.get(landing["Location"]).content.decode()
    assert 'id="password-set-form"' in form
    done = client.post(landing["Location"], {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/password-reset/done/"
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    # The link is used up; a made-up one is refused the same way.
    assert 'id="password-reset-invalid"' in client.get(link, follow=True).content.decode()
    assert 'id="password-reset-invalid"' in client.get("/password-reset/confirm/?uid=x&token=y").content.decode()
    # Unknown addresses get the same answer and no email.
    assert client.post("/password-reset/", {"email": "nobody@a.test"})["Location"] == "/password-reset/sent/"
    assert len(mail.outbox) == 1


# --- translations and error pages -------------------------------------------------------------------


def test_pages_follow_the_chosen_language(client, tenant_a):
    client.cookies["django_language"] = "zh-hans"
    login = client.get("/login/")
    assert login.status_code == 200 and 'lang="zh-hans"' in login.content.decode()
    signed_in(client, tenant_a.owner)
    for url in ("/", "/team/", "/team/api-keys/", "/team/webhooks/", "/team/audit/", "/password-reset/"):
        assert client.get(url).status_code in (200, 302), url


def test_error_pages_render_with_a_way_back(client, tenant_a):
    missing = signed_in(client, tenant_a.member("viewer")).get("/team/webhooks/00000000-0000-0000-0000-000000000000/")
    assert missing.status_code in (403, 404)
    not_found = client.get("/no-such-page/")
    assert not_found.status_code == 404 and 'id="error-back"' in not_found.content.decode()
    forbidden = client.get("/team/audit/")
    assert forbidden.status_code == 403 and 'id="error-back"' in forbidden.content.decode()
    from django.template.loader import render_to_string

    page = render_to_string("500.html")  # no request: renders even when the request's context can't be built
    assert 'id="error-back"' in page and "/static/css/portal.css" in page


def test_member_without_organization_and_suspended_organization_pages(client, tenant_a):
    outsider = User.objects.create_user(email="alone@x.test", password=None)
    page = signed_in(client, outsider).get("/team/")
    assert page.status_code == 403 and "No studio yet" in page.content.decode()
    services.organization_set_suspended(organization=tenant_a.organization, suspended=True,
                                        actor=Actor(user=tenant_a.owner), reason="billing")
    suspended = signed_in(client, tenant_a.owner).get("/")
    assert suspended.status_code == 403 and "is suspended" in suspended.content.decode()
