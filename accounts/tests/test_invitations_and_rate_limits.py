"""The invitation flow end to end through the API and the mail it sends, and the API's rate limits."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.api import throttling
from accounts.models import AuditEntry, Invitation, Membership, User
from config.tenancy import tenant_scope
from accounts.tokens import token_digest

PASSWORD = "correct horse battery staple"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"} and error["code"] == code, error
    return error


def invite_through_the_api(client, email, role, mailoutbox, capture) -> str:
    """POST an invitation, let the transaction commit, and return the token from the mailed link."""
    sent_before = len(mailoutbox)
    with capture(execute=True):
        response = client.post("/api/v1/invitations", {"email": email, "role": role})
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "pending" and response.json()["role"] == role
    assert len(mailoutbox) == sent_before + 1
    mail = mailoutbox[-1]
    assert mail.to == [email.lower()]
    links = re.findall(r"https?://\S+/invitations/([A-Za-z0-9_-]+)/", mail.body)
    assert len(links) == 1, mail.body
    return links[0]


# --- invitations --------------------------------------------------------------------------------


def test_an_invited_person_joins_with_a_password_and_signs_in(
    tenant_a, mailoutbox, django_capture_on_commit_callbacks, settings
):
    settings.PUBLIC_BASE_URL = "https://studio.example"
    owner = tenant_a.client("owner")
    token = invite_through_the_api(owner, "New.Person@Example.test", "producer", mailoutbox,
                                   django_capture_on_commit_callbacks)
    mail = mailoutbox[-1]
    assert tenant_a.organization.name in mail.subject
    assert f"https://studio.example/invitations/{token}/" in mail.body and "producer" in mail.body

    # Only the token's hash is kept.
    with tenant_scope(tenant_a.organization):
        invitation = Invitation.objects.get(email="new.person@example.test")
        stored = list(Invitation.objects.values()) + list(AuditEntry.objects.values())
    assert invitation.token_hash == token_digest(token)
    assert token not in str(stored)
    assert not User.objects.filter(email="new.person@example.test").exists()

    anonymous = APIClient()
    accepted = anonymous.post(
        "/api/v1/invitations/accept", {"token": token, "password": PASSWORD, "full_name": "New Person"},
        REMOTE_ADDR="192.0.2.33",
    )
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["email"] == "new.person@example.test"
    assert accepted.json()["role"] == "producer"
    assert accepted.json()["full_name"] == "New Person"

    user = User.objects.get(email="new.person@example.test")
    assert user.check_password(PASSWORD) and user.full_name == "New Person"
    with tenant_scope(tenant_a.organization):
        assert Membership.objects.get(user=user).role == "producer"
        invitation.refresh_from_db()
        entry = AuditEntry.objects.get(action="invitation.accept")
    assert invitation.status == "accepted" and invitation.accepted_by == user
    assert entry.actor == user and entry.ip_address == "192.0.2.33"
    assert entry.after == {"user": user.email, "role": "producer"}

    # The owner sees the accepted invitation and the new member.
    invitations = owner.get("/api/v1/invitations").json()["results"]
    assert [(i["email"], i["status"]) for i in invitations] == [("new.person@example.test", "accepted")]
    assert "new.person@example.test" in [m["email"] for m in owner.get("/api/v1/members").json()["results"]]

    # The new person signs in through the portal with the chosen password, then uses the API
    # with the producer's rights.
    browser = Client()
    wrong = browser.post("/login/", {"email": "new.person@example.test", "password": "not it at all"})
    assert wrong.status_code == 401
    signed_in = browser.post("/login/", {"email": "new.person@example.test", "password": PASSWORD})
    assert signed_in.status_code == 302
    assert browser.get("/api/v1/organization").json()["slug"] == tenant_a.slug
    assert browser.post("/api/v1/projects", {"name": "Mine"}, content_type="application/json").status_code == 201
    assert_error(browser.get("/api/v1/api-keys"), 403, "missing_scope")

    # The link works once.
    again = APIClient().post("/api/v1/invitations/accept", {"token": token, "password": PASSWORD})
    assert_error(again, 410, "invitation_used")


def test_a_signed_in_user_with_the_invited_email_accepts_without_a_password(
    tenant_a, tenant_b, mailoutbox, django_capture_on_commit_callbacks
):
    existing = tenant_b.member("viewer")  # already a member of studio B
    existing.set_password(PASSWORD)
    existing.save()
    token = invite_through_the_api(tenant_a.client("owner"), existing.email, "reviewer", mailoutbox,
                                   django_capture_on_commit_callbacks)

    # Anonymous with a password would create a duplicate account: refused, sign in first.
    assert_error(APIClient().post("/api/v1/invitations/accept", {"token": token, "password": "x" * 20}),
                 401, "sign_in_required")

    session = APIClient()
    session.force_login(existing)
    accepted = session.post("/api/v1/invitations/accept", {"token": token})
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["role"] == "reviewer"

    assert User.objects.filter(email=existing.email).count() == 1
    existing.refresh_from_db()
    assert existing.check_password(PASSWORD), "accepting must not touch the password"
    with tenant_scope(tenant_a.organization):
        assert Membership.objects.get(user=existing).role == "reviewer"
    with tenant_scope(tenant_b.organization):
        assert Membership.objects.get(user=existing).role == "viewer"

    # Now a member of both: each organization answers with its own role.
    session.credentials(HTTP_X_ORGANIZATION=tenant_a.slug)
    assert session.get("/api/v1/organization").json()["slug"] == tenant_a.slug
    assert session.get("/api/v1/projects").status_code == 200
    assert_error(session.post("/api/v1/projects", {"name": "x"}), 403, "missing_scope")
    session.credentials(HTTP_X_ORGANIZATION=tenant_b.slug)
    assert session.get("/api/v1/organization").json()["slug"] == tenant_b.slug


def test_a_revoked_invitation_mails_nothing_more_and_cannot_be_accepted(
    tenant_a, mailoutbox, django_capture_on_commit_callbacks
):
    owner = tenant_a.client("owner")
    token = invite_through_the_api(owner, "maybe@example.test", "viewer", mailoutbox,
                                   django_capture_on_commit_callbacks)
    invitation_id = owner.get("/api/v1/invitations").json()["results"][0]["id"]
    assert owner.delete(f"/api/v1/invitations/{invitation_id}").status_code == 204
    assert owner.get(f"/api/v1/invitations/{invitation_id}").json()["status"] == "revoked"
    assert_error(APIClient().post("/api/v1/invitations/accept", {"token": token, "password": PASSWORD}),
                 404, "invitation_not_found")
    assert not User.objects.filter(email="maybe@example.test").exists()
    # A revoked invitation no longer blocks a new one.
    invite_through_the_api(owner, "maybe@example.test", "viewer", mailoutbox, django_capture_on_commit_callbacks)


# --- rate limits --------------------------------------------------------------------------------

WINDOW_START = 1_900_000_020.0  # a multiple of 60


@pytest.fixture
def clock(monkeypatch):
    """Pin the throttle's clock 15 s into a one-minute window, so windows never roll mid-test."""
    now = SimpleNamespace(value=WINDOW_START + 15)
    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: now.value))
    return now


@pytest.fixture
def rates(settings):
    def set_rates(**overrides):
        settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, **overrides}

    return set_rates


def test_the_fourth_call_with_a_key_is_429_with_retry_after(tenant_a, tenant_b, clock, rates):
    rates(api_key="3/min")
    client = tenant_a.key_client(["project:read", "project:write"])
    for _ in range(3):
        assert client.get("/api/v1/projects").status_code == 200

    limited = client.get("/api/v1/projects")
    error = assert_error(limited, 429, "rate_limited")
    assert error["fields"] == {}
    retry_after = limited["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) > 0
    assert int(retry_after) == 45  # until the end of the minute
    # Writes count against the same key.
    assert_error(client.post("/api/v1/projects", {"name": "x"}), 429, "rate_limited")

    # Another key of the same organization, and another organization, are not affected.
    assert tenant_a.key_client(["project:read"]).get("/api/v1/projects").status_code == 200
    assert tenant_b.key_client(["project:read"]).get("/api/v1/projects").status_code == 200

    # The next window lets the key in again.
    clock.value += 45
    assert client.get("/api/v1/projects").status_code == 200


def test_retry_after_is_a_positive_whole_number_on_the_real_clock(tenant_a, rates):
    rates(api_key="1/hour")
    client = tenant_a.key_client(["project:read"])
    assert client.get("/api/v1/projects").status_code == 200
    limited = client.get("/api/v1/projects")
    assert_error(limited, 429, "rate_limited")
    assert limited["Retry-After"].isdigit() and 0 < int(limited["Retry-After"]) <= 3600


def test_the_organization_bucket_throttles_all_of_its_keys(tenant_a, tenant_b, clock, rates):
    rates(api_key="100/min", organization="3/min")
    first, second = tenant_a.key_client(["project:read"]), tenant_a.key_client(["project:read"])
    for _ in range(3):
        assert first.get("/api/v1/projects").status_code == 200

    limited = second.get("/api/v1/projects")
    assert_error(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) == 45
    # Signed-in members of the same organization share the bucket too.
    assert_error(tenant_a.client("owner").get("/api/v1/projects"), 429, "rate_limited")

    other = tenant_b.key_client(["project:read"])
    for _ in range(3):
        assert other.get("/api/v1/projects").status_code == 200


def test_signed_in_users_have_their_own_bucket(tenant_a, clock, rates):
    rates(user="2/min")
    alice, bob = tenant_a.client("viewer"), tenant_a.client("viewer")
    assert alice.get("/api/v1/projects").status_code == 200
    assert alice.get("/api/v1/members").status_code == 200
    assert_error(alice.get("/api/v1/organization"), 429, "rate_limited")
    assert bob.get("/api/v1/organization").status_code == 200


def test_anonymous_callers_are_limited_per_address(db, clock, rates):
    rates(anonymous="2/min")
    client = APIClient()
    for _ in range(2):
        assert_error(client.post("/api/v1/invitations/accept", {"token": "nope"}, REMOTE_ADDR="192.0.2.1"),
                     404, "invitation_not_found")
    limited = client.post("/api/v1/invitations/accept", {"token": "nope"}, REMOTE_ADDR="192.0.2.1")
    assert_error(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) == 45
    assert_error(client.post("/api/v1/invitations/accept", {"token": "nope"}, REMOTE_ADDR="192.0.2.2"),
                 404, "invitation_not_found")
