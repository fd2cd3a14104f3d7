"""Every sign-in form is under the same lock: the Django admin's login counts failures with the
portal's and locks after the same number (LOGIN_FAILURE_LIMIT); password-reset mails are limited
per address and per client address, with an answer that never tells whether the address exists."""
from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client

from accounts.models import User

PASSWORD = "correct horse battery staple"
LIMIT = 4


@pytest.fixture
def operator(db, settings):
    settings.LOGIN_FAILURE_LIMIT = LIMIT
    return User.objects.create_superuser(email="ops@platform.test", password=PASSWORD)


def portal_login(client, email, password, ip="192.0.2.10"):
    return client.post("/login/", {"email": email, "password": password}, REMOTE_ADDR=ip)


def admin_login(client, email, password, ip="192.0.2.10"):
    return client.post("/admin/login/?next=/admin/", {"username": email, "password": password, "next": "/admin/"},
                       REMOTE_ADDR=ip)


FORMS = {"portal": (portal_login, 401), "admin": (admin_login, 200)}


@pytest.mark.parametrize("form", FORMS)
def test_each_login_form_locks_after_the_same_number_of_failures(operator, form):
    sign_in, refused_status = FORMS[form]
    client = Client()
    for _ in range(LIMIT - 1):
        assert sign_in(client, operator.email, "wrong").status_code == refused_status
    # One short of the limit, the right password still works, and it clears the count.
    assert sign_in(client, operator.email, PASSWORD).status_code == 302
    client = Client()
    for _ in range(LIMIT):
        assert sign_in(client, operator.email, "wrong").status_code == refused_status
    locked = sign_in(client, operator.email, PASSWORD)
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    assert "Too many failed attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # Another address is not locked out by these failures.
    assert sign_in(Client(), operator.email, PASSWORD, ip="192.0.2.99").status_code == 302


def test_failures_at_the_admin_lock_the_portal_and_the_other_way_round(operator):
    for _ in range(LIMIT // 2):
        assert admin_login(Client(), operator.email, "wrong").status_code == 200
    for _ in range(LIMIT - LIMIT // 2):
        assert portal_login(Client(), operator.email, "wrong").status_code == 401
    # LIMIT failures in all, across both forms: both are locked now.
    assert admin_login(Client(), operator.email, PASSWORD).status_code == 429
    assert portal_login(Client(), operator.email, PASSWORD).status_code == 429


def test_the_admin_still_refuses_members_who_are_not_staff(operator, tenant_a):
    tenant_a.owner.set_password(PASSWORD)
    tenant_a.owner.save()
    client = Client()
    response = admin_login(client, tenant_a.owner.email, PASSWORD)
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert admin_login(client, operator.email, PASSWORD).status_code == 302


# --- password reset -----------------------------------------------------------------------------


def reset(email, ip="192.0.2.20"):
    response = Client().post("/password-reset/", {"email": email}, REMOTE_ADDR=ip)
    return response.status_code, response.get("Location")


SENT = (302, "/password-reset/sent/")


def test_reset_mails_are_limited_per_address_without_telling_who_exists(db, settings):
    settings.PASSWORD_RESET_RATE_PER_EMAIL = "2/hour"
    settings.PASSWORD_RESET_RATE_PER_IP = "100/hour"
    User.objects.create_user(email="known@a.test", password=PASSWORD)
    answers = [reset("known@a.test", ip=f"192.0.2.{n}") for n in range(1, 6)]
    assert answers == [SENT] * 5
    assert len(mail.outbox) == 2 and all(m.to == ["known@a.test"] for m in mail.outbox)
    # An address without an account gets the very same answers, under the limit and over it.
    assert [reset("nobody@a.test", ip=f"192.0.2.{n}") for n in range(1, 6)] == answers
    assert len(mail.outbox) == 2
    # The limit is per address: another account still gets its mail.
    User.objects.create_user(email="other@a.test", password=PASSWORD)
    assert reset("Other@A.test") == SENT and mail.outbox[-1].to == ["other@a.test"]


def test_reset_mails_are_limited_per_client_address(db, settings):
    settings.PASSWORD_RESET_RATE_PER_EMAIL = "100/hour"
    settings.PASSWORD_RESET_RATE_PER_IP = "3/hour"
    for number in range(5):
        User.objects.create_user(email=f"user{number}@a.test", password=PASSWORD)
    assert [reset(f"user{number}@a.test", ip="198.51.100.7") for number in range(5)] == [SENT] * 5
    assert [m.to for m in mail.outbox] == [["user0@a.test"], ["user1@a.test"], ["user2@a.test"]]
    assert reset("user4@a.test", ip="198.51.100.8") == SENT
    assert mail.outbox[-1].to == ["user4@a.test"]
