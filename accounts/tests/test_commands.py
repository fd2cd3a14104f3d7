"""The management commands a user or a script drives."""
import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Organization, User
from config.tenancy import tenant_scope


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_org_creates_the_organization_and_an_owner_who_can_sign_in(db, client):
    output = run("create_org", "northwind", "--name", "Northwind Films", "--owner", "Boss@Northwind.test",
                 "--password", "a long enough passphrase")
    assert "created organization northwind" in output
    organization = Organization.objects.get(slug="northwind")
    owner = User.objects.get(email="boss@northwind.test")
    with tenant_scope(organization):
        assert Membership.objects.get(user=owner).role == "owner"
    response = client.post("/login/", {"email": "boss@northwind.test", "password": "a long enough passphrase"})
    assert response.status_code == 302


def test_create_org_refuses_a_taken_or_invalid_slug(db):
    run("create_org", "taken", "--name", "One", "--owner", "one@x.test")
    with pytest.raises(CommandError, match="taken"):
        run("create_org", "taken", "--name", "Two", "--owner", "two@x.test")
    with pytest.raises(CommandError):
        run("create_org", "Not A Slug!", "--name", "Three", "--owner", "three@x.test")


def test_create_api_key_prints_only_a_working_key(db):
    run("create_org", "acme", "--name", "Acme", "--owner", "o@acme.test")
    output = run("create_api_key", "--org", "acme", "--name", "partner", "--scopes", "project:read")
    key = output.strip()
    assert output.count("\n") == 1 and key.startswith("sk_") and len(key) == 52
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/projects").status_code == 200
    assert client.post("/api/v1/projects", {"name": "x"}, format="json").status_code == 403
    with tenant_scope(Organization.objects.get(slug="acme")):
        assert ApiKey.objects.get().scopes == ["project:read"]


def test_create_api_key_rejects_unknown_org_and_scopes(db):
    run("create_org", "acme", "--name", "Acme", "--owner", "o@acme.test")
    with pytest.raises(CommandError, match="no organization"):
        run("create_api_key", "--org", "nope", "--name", "k")
    with pytest.raises(CommandError, match="Unknown scopes"):
        run("create_api_key", "--org", "acme", "--name", "k", "--scopes", "project:read,root:everything")


def test_ensure_demo_creates_once_and_prints_the_login(db, settings, tmp_path, client):
    settings.VAR_DIR = tmp_path
    first = run("ensure_demo")
    assert first.startswith("demo login: owner@demo.studio / ")
    password = first.strip().rsplit(" ", 1)[-1]
    assert run("ensure_demo") == first
    assert Organization.objects.filter(slug="demo").count() == 1
    assert client.post("/login/", {"email": "owner@demo.studio", "password": password}).status_code == 302
