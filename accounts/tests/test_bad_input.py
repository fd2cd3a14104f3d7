"""Bad input gets a clear 4xx in the API's error shape, never a 500 and never an HTML page."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Invitation, Membership, User
from config.tenancy import tenant_scope
from accounts.tokens import token_digest


def assert_error(response, status: int, code: str | None = None) -> dict:
    """`status` with `{"error": {"code", "message", "fields"}}` as JSON; returns the error object."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def assert_invalid(response, *fields: str, code: str = "invalid") -> dict:
    """A 400 validation error naming exactly `fields`."""
    error = assert_error(response, 400, code)
    assert sorted(error["fields"]) == sorted(fields), error
    for name in fields:
        assert error["fields"][name], error
    return error


def text_code(value) -> str:
    """The error code for `value` in a text field: a JSON value of another type is `invalid_type`."""
    return "invalid" if value is None or isinstance(value, str) else "invalid_type"


def member_id(tenant, user) -> str:
    with tenant_scope(tenant.organization):
        return str(Membership.objects.get(user=user).pk)


def invite(tenant, email: str, role: str = "viewer", **extra) -> str:
    """Create a pending invitation directly and return its token."""
    from accounts import services
    from accounts.audit import Actor

    with tenant_scope(tenant.organization):
        _invitation, token = services.invitation_create(
            organization=tenant.organization, email=email, role=role, actor=Actor(user=tenant.owner)
        )
    return token


# --- missing fields and wrong types -------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, fields",
    [
        ("/api/v1/projects", {}, ["name"]),
        ("/api/v1/projects", {"description": "no name"}, ["name"]),
        ("/api/v1/projects", {"name": ""}, ["name"]),
        ("/api/v1/projects", {"name": "x" * 121}, ["name"]),
        ("/api/v1/api-keys", {}, ["name", "scopes"]),
        ("/api/v1/api-keys", {"name": "k"}, ["scopes"]),
        ("/api/v1/api-keys", {"scopes": ["project:read"]}, ["name"]),
        ("/api/v1/invitations", {}, ["email", "role"]),
        ("/api/v1/invitations", {"email": "a@example.test"}, ["role"]),
    ],
)
def test_missing_or_empty_fields_are_named(tenant_a, path, body, fields):
    assert_invalid(tenant_a.client().post(path, body), *fields)


@pytest.mark.parametrize("name, code", [(["a list"], "invalid_type"), ({"an": "object"}, "invalid_type"),
                                        (True, "invalid_type"), (123, "invalid_type"), (None, "invalid")],
                         ids=["list", "object", "bool", "number", "null"])
def test_project_name_of_the_wrong_type(tenant_a, name, code):
    client = tenant_a.client()
    assert_invalid(client.post("/api/v1/projects", {"name": name}), "name", code=code)
    project = tenant_a.project("Existing")
    assert_invalid(client.patch(f"/api/v1/projects/{project.pk}", {"name": name}), "name", code=code)


def test_a_numeric_project_name_is_refused_not_read_as_text(tenant_a):
    """DRF's CharField took 123 and stored "123"; the JSON type is checked first (config.json_input)."""
    error = assert_invalid(tenant_a.key_client().post("/api/v1/projects", {"name": 123}), "name",
                           code="invalid_type")
    assert error["fields"]["name"] == ["Expected a string, got a number."]
    with tenant_scope(tenant_a.organization):
        from projects.models import Project

        assert not Project.objects.exists()


@pytest.mark.parametrize(
    "body, field, code",
    [
        ({"name": "k", "scopes": "project:read"}, "scopes", "invalid_type"),
        ({"name": "k", "scopes": {"project:read": True}}, "scopes", "invalid_type"),
        ({"name": "k", "scopes": 7}, "scopes", "invalid_type"),
        ({"name": "k", "scopes": None}, "scopes", "invalid"),
        ({"name": "k", "scopes": [["project:read"]]}, "scopes", "invalid_type"),
        ({"name": "k", "scopes": [None]}, "scopes", "invalid"),
        ({"name": "k", "scopes": ["not:a-scope"]}, "scopes", "invalid"),
        ({"name": ["k"], "scopes": ["project:read"]}, "name", "invalid_type"),
        ({"name": {"k": 1}, "scopes": ["project:read"]}, "name", "invalid_type"),
        ({"name": 5, "scopes": ["project:read"]}, "name", "invalid_type"),
    ],
)
def test_api_key_fields_of_the_wrong_type(tenant_a, body, field, code):
    assert_invalid(tenant_a.client().post("/api/v1/api-keys", body), field, code=code)


# A partner's client that sends the wrong JSON type hears so, on each kind of field (config.json_input).
# The rule for every operation is checked by the schema walk in config/tests/test_api_schemathesis.py.


def test_a_job_duration_as_a_string_is_refused(tenant_a):
    project = tenant_a.project("Typed")
    body = {"project": str(project.pk), "topic": "A lighthouse keeper", "options": {"duration_s": "30"}}
    error = assert_invalid(tenant_a.key_client().post("/api/v1/jobs", body), "options", code="invalid_type")
    assert error["fields"] == {"options": {"duration_s": ["Expected a number, got a string."]}}


def test_a_job_project_given_as_an_integer_is_refused(tenant_a):
    """DRF's UUIDField read an integer as UUID(int=...)."""
    body = {"project": 5, "topic": "A lighthouse keeper", "priority": "5"}
    error = assert_invalid(tenant_a.key_client().post("/api/v1/jobs", body), "project", "priority",
                           code="invalid_type")
    assert error["fields"]["priority"] == ["Expected an integer, got a string."]


@pytest.mark.parametrize("is_active", [1, 0, "true", "false"])
def test_a_webhook_is_active_that_is_no_boolean_is_refused(tenant_a, is_active):
    client = tenant_a.key_client()
    body = {"url": "https://hooks.example.test/in", "events": ["job.completed"], "is_active": is_active}
    error = assert_invalid(client.post("/api/v1/webhooks", body), "is_active", code="invalid_type")
    assert error["fields"]["is_active"] == [f"Expected a boolean (true or false), got "
                                            f"{'a number' if isinstance(is_active, int) else 'a string'}."]


def test_api_key_scopes_as_a_string_are_refused(tenant_a):
    error = assert_invalid(tenant_a.key_client().post("/api/v1/api-keys", {"name": "k", "scopes": "project:read"}),
                           "scopes", code="invalid_type")
    assert error["fields"]["scopes"] == ["Expected an array, got a string."]


@pytest.mark.parametrize("budget", [100, 12.5, "1e3", " 5", "-"], ids=["int", "float", "exponent", "space", "sign"])
def test_money_is_a_decimal_string(tenant_a, budget):
    response = tenant_a.key_client().patch("/api/v1/generation-policy", {"monthly_budget": budget})
    assert_invalid(response, "monthly_budget", code="invalid_type")
    assert tenant_a.key_client().patch("/api/v1/generation-policy", {"monthly_budget": "12.50"}).status_code == 200


def test_template_settings_are_checked_as_the_schema_states(tenant_a):
    """`settings` is an object field whose schema is the template settings: its values are typed too."""
    body = {"name": "T", "settings": {"shots": "4", "approval_required": 1, "providers": {"text": "offline"},
                                      "prompts": {"style": 7}}}
    error = assert_invalid(tenant_a.key_client().post("/api/v1/templates", body), "settings", code="invalid_type")
    assert set(error["fields"]["settings"]) == {"shots", "approval_required", "providers", "prompts"}
    assert error["fields"]["settings"]["providers"] == {"text": ["Expected an array, got a string."]}


def test_type_errors_come_alone_before_the_other_rules(tenant_a):
    """A wrong type is reported with code invalid_type; other problems of the same body wait for the
    next try (the types decide how the rest would even be read)."""
    error = assert_invalid(tenant_a.key_client().post("/api/v1/projects", {"description": 5}), "description",
                           code="invalid_type")
    assert "name" not in error["fields"]



def test_an_api_key_needs_at_least_one_scope(tenant_a):
    error = assert_error(tenant_a.client().post("/api/v1/api-keys", {"name": "k", "scopes": []}), 400)
    assert "scopes" in error["fields"]


@pytest.mark.parametrize("body", ["[]", '"a string"', "42", "null", '[{"name": "x"}]'])
def test_a_json_body_that_is_not_an_object(tenant_a, body):
    response = tenant_a.client().post("/api/v1/projects", body, content_type="application/json")
    assert_error(response, 400, "invalid")


@pytest.mark.parametrize(
    "body", ["{bad", '{"name": "x"', "{'name': 'x'}", '{"name": NaN}', "\x00\x01", b"\xff\xfe{", b'{"name": "\xc3"}']
)
def test_malformed_json(tenant_a, body):
    response = tenant_a.client().post("/api/v1/projects", body, content_type="application/json")
    assert_error(response, 400, "malformed_request")


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000, '{"name": ' + "[" * 5000 + "]" * 5000 + "}"],
    ids=["arrays", "objects", "in-a-field"],
)
def test_deeply_nested_json_is_malformed_not_a_500(tenant_a, body):
    """Python's JSON decoder raises RecursionError (not ValueError) past ~1000 levels."""
    response = tenant_a.client().post("/api/v1/projects", body, content_type="application/json")
    assert_error(response, 400, "malformed_request")
    response = APIClient().post("/api/v1/invitations/accept", body, content_type="application/json")
    assert_error(response, 400, "malformed_request")


def test_a_number_too_long_to_read_is_malformed(tenant_a):
    body = '{"name": ' + "1" * 5000 + "}"
    assert_error(tenant_a.client().post("/api/v1/projects", body, content_type="application/json"),
                 400, "malformed_request")


@pytest.mark.parametrize("name", ["a\\u0000b", "\\ud800"], ids=["nul", "lone-surrogate"])
def test_unstorable_characters_are_refused(tenant_a, name):
    body = '{"name": "%s"}' % name
    assert_invalid(tenant_a.client().post("/api/v1/projects", body, content_type="application/json"), "name")


@pytest.mark.parametrize("search", ["%00", "a%00b", "%C3%28", "x" * 500, "%25%5F", "'; DROP TABLE x; --"])
def test_odd_search_terms_find_nothing_rather_than_fail(tenant_a, search):
    """A NUL in a query is refused by PostgreSQL (DataError, a 500) unless the selector stops it."""
    tenant_a.project("Alpha")
    response = tenant_a.client().get(f"/api/v1/projects?search={search}")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["results"] == []


def test_search_still_finds_by_part_of_the_name(tenant_a):
    tenant_a.project("Alpha trailer")
    tenant_a.project("Beta")
    names = [p["name"] for p in tenant_a.client().get("/api/v1/projects?search=TRAIL").json()["results"]]
    assert names == ["Alpha trailer"]


def test_malformed_json_on_the_public_accept_endpoint():
    response = APIClient().post("/api/v1/invitations/accept", "{nope", content_type="application/json")
    assert_error(response, 400, "malformed_request")


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/x-www-form-urlencoded", "name=x"),
        ("multipart/form-data; boundary=xyz",
         '--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--xyz--'),
        ("text/plain", '{"name": "x"}'),
        ("application/xml", "<name>x</name>"),
    ],
)
def test_a_body_that_is_not_json_is_415(tenant_a, content_type, body):
    response = tenant_a.client().post("/api/v1/projects", body, content_type=content_type)
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("who", ["session", "key", "anonymous"])
def test_an_oversized_body_is_413(tenant_a, settings, who):
    client = {"session": tenant_a.client, "key": tenant_a.key_client, "anonymous": APIClient}[who]()
    path = "/api/v1/invitations/accept" if who == "anonymous" else "/api/v1/projects"
    body = json.dumps({"name": "Big", "token": "t", "description": "a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    assert_error(client.post(path, body, content_type="application/json"), 413, "payload_too_large")


def test_the_body_limit_follows_the_setting(tenant_a, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 200
    client = tenant_a.client()
    assert_error(client.post("/api/v1/projects", {"name": "Big", "description": "a" * 200}), 413, "payload_too_large")
    assert client.post("/api/v1/projects", {"name": "Small", "description": "a" * 100}).status_code == 201


# --- unknown things -----------------------------------------------------------------------------


@pytest.mark.parametrize("collection", ["projects", "members", "invitations", "api-keys"])
@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_an_unknown_id_is_404(tenant_a, collection, method):
    response = getattr(tenant_a.client(), method)(f"/api/v1/{collection}/{uuid.uuid4()}", {"role": "viewer"})
    if method == "patch" and collection in ("invitations", "api-keys"):
        # These have no PATCH at all.
        assert_error(response, 405, "method_not_allowed")
    else:
        assert_error(response, 404, "not_found")


@pytest.mark.parametrize("path", [
    "/api/v1/projects/not-a-uuid",
    "/api/v1/projects/123",
    "/api/v1/members/00000000-0000-0000-0000-00000000000g",
    "/api/v1/api-keys/%27%3B--",
    "/api/v1/invitations/..%2F..%2Fetc",
])
def test_a_malformed_id_in_the_path_is_404(tenant_a, path):
    assert_error(tenant_a.client().get(path), 404, "not_found")


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/projects/a/b/c", "/api/v1/", "/api/v2/projects"])
def test_an_unknown_api_path_is_404_json(tenant_a, path):
    assert_error(tenant_a.client().get(path), 404, "not_found")
    assert_error(APIClient().post(path, {"x": 1}), 404, "not_found")


def test_an_undeclared_method_is_405(tenant_a):
    assert_error(tenant_a.client().put("/api/v1/projects", {"name": "x"}), 405, "method_not_allowed")
    assert_error(tenant_a.client().post("/api/v1/audit-log", {}), 405, "method_not_allowed")


@pytest.mark.parametrize("query", ["page=abc", "page=999", "page=0"])
def test_an_impossible_page_is_404(tenant_a, query):
    assert_error(tenant_a.client().get(f"/api/v1/projects?{query}"), 404, "not_found")


@pytest.mark.parametrize("query, field", [
    ("since=yesterday", "since"), ("until=2024-13-45", "until"), ("api_key=nope", "api_key"),
    ("actor=not-an-email", "actor"), ("action=" + "x" * 65, "action"),
])
def test_bad_audit_filters(tenant_a, query, field):
    assert_invalid(tenant_a.client().get(f"/api/v1/audit-log?{query}"), field)


# --- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Bearer garbage",
        "Bearer sk_short_x",
        "Bearer ",
        "Bearer sk_AAAAAAAA_" + "A" * 40,  # well formed, unknown
        "Bearer sk_AAAAAAAA_" + "A" * 39 + "!",
        "Bearer xx_AAAAAAAA_" + "A" * 40,
        "Bearer sk_AAAAAAAA_" + "A" * 40 + "_extra",
        "Bearer sk_\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9_" + "\xe9" * 40,  # not ASCII
        "Bearer \xff\xfe",
    ],
    ids=["garbage", "short", "empty", "unknown", "bad-char", "bad-prefix", "extra-part", "latin1", "bytes"],
)
def test_a_malformed_or_unknown_key_is_401(tenant_a, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    error = assert_error(client.get("/api/v1/projects"), 401, "invalid_api_key")
    assert error["fields"] == {}
    assert_error(client.post("/api/v1/projects", {"name": "x"}), 401, "invalid_api_key")


def test_a_known_prefix_with_a_wrong_secret_is_401(tenant_a):
    _key, plain = tenant_a.key(["project:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plain[:-1]}{'A' if plain[-1] != 'A' else 'B'}")
    assert_error(client.get("/api/v1/projects"), 401, "invalid_api_key")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "bearer sk_x", "sk_AAAAAAAA_" + "A" * 40])
def test_a_wrong_scheme_is_not_authenticated(tenant_a, header):
    _key, plain = tenant_a.key()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.replace("sk_AAAAAAAA_" + "A" * 40, plain))
    response = client.get("/api/v1/projects")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("slug", ["no-such-studio", "studio-b", "", "x" * 300])
def test_an_organization_header_the_user_cannot_use(tenant_a, tenant_b, slug):
    client = tenant_a.client()
    client.credentials(HTTP_X_ORGANIZATION=slug)
    response = client.get("/api/v1/projects")
    if slug:
        assert_error(response, 404, "not_found")
    else:
        # No header: the user's only organization is used.
        assert response.status_code == 200


def test_no_credentials_at_all_is_401():
    response = APIClient().get("/api/v1/projects")
    assert_error(response, 401, "not_authenticated")


# --- members and invitations --------------------------------------------------------------------


@pytest.mark.parametrize("role", ["superuser", "", "OWNER", None, ["admin"], 3])
def test_an_invalid_role(tenant_a, role):
    client = tenant_a.client()
    target = tenant_a.member("viewer")
    code = text_code(role)
    assert_invalid(client.patch(f"/api/v1/members/{member_id(tenant_a, target)}", {"role": role}), "role", code=code)
    assert_invalid(client.post("/api/v1/invitations", {"email": "new@example.test", "role": role}), "role",
                   code=code)
    with tenant_scope(tenant_a.organization):
        assert Membership.objects.get(user=target).role == "viewer"
        assert not Invitation.objects.exists()


def test_a_member_change_without_a_role(tenant_a):
    target = tenant_a.member("viewer")
    assert_invalid(tenant_a.client().patch(f"/api/v1/members/{member_id(tenant_a, target)}", {}), "role")


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.test", "a b@example.test", "", None,
                                   ["a@example.test"], {"email": "a@example.test"}, 5,
                                   "x" * 250 + "@example.test"])
def test_an_invalid_invitation_email(tenant_a, email):
    response = tenant_a.client().post("/api/v1/invitations", {"email": email, "role": "viewer"})
    assert_invalid(response, "email", code=text_code(email))


def test_inviting_a_member_or_inviting_twice_is_a_conflict(tenant_a):
    client = tenant_a.client()
    member = tenant_a.member("viewer")
    assert_error(client.post("/api/v1/invitations", {"email": member.email, "role": "admin"}), 409, "already_member")
    assert client.post("/api/v1/invitations", {"email": "twice@example.test", "role": "viewer"}).status_code == 201
    assert_error(client.post("/api/v1/invitations", {"email": "Twice@Example.test", "role": "viewer"}),
                 409, "already_invited")


def test_accepting_an_expired_invitation_is_410(tenant_a):
    token = invite(tenant_a, "late@example.test")
    with tenant_scope(tenant_a.organization):
        expired = Invitation.objects.filter(token_hash=token_digest(token))
        assert expired.update(expires_at=timezone.now() - timedelta(seconds=1)) == 1

    response = APIClient().post("/api/v1/invitations/accept", {"token": token, "password": "a long passphrase 42"})
    assert_error(response, 410, "invitation_expired")
    assert not User.objects.filter(email="late@example.test").exists()


def test_accepting_a_used_invitation_is_410(tenant_a):
    token = invite(tenant_a, "once@example.test")
    first = APIClient().post("/api/v1/invitations/accept", {"token": token, "password": "a long passphrase 42"})
    assert first.status_code == 201, first.content
    again = APIClient().post("/api/v1/invitations/accept", {"token": token, "password": "another passphrase 43"})
    assert_error(again, 410, "invitation_used")


def test_accepting_a_revoked_invitation_is_404(tenant_a):
    token = invite(tenant_a, "revoked@example.test")
    with tenant_scope(tenant_a.organization):
        invitation_id = Invitation.objects.get(token_hash=token_digest(token)).pk
    assert tenant_a.client().delete(f"/api/v1/invitations/{invitation_id}").status_code == 204
    response = APIClient().post("/api/v1/invitations/accept", {"token": token, "password": "a long passphrase 42"})
    assert_error(response, 404, "invitation_not_found")


@pytest.mark.parametrize("token", ["unknown-token", "x" * 43, "' OR 1=1 --", "é"])
def test_accepting_an_unknown_token_is_404(db, token):
    response = APIClient().post("/api/v1/invitations/accept", {"token": token, "password": "a long passphrase 42"})
    assert_error(response, 404, "invitation_not_found")


@pytest.mark.parametrize("body, field", [
    ({}, "token"), ({"token": ""}, "token"), ({"token": ["t"]}, "token"), ({"token": "t" * 101}, "token"),
    ({"token": "t", "password": ["p"]}, "password"), ({"token": "t", "full_name": "n" * 151}, "full_name"),
])
def test_accepting_with_bad_fields(db, body, field):
    assert_invalid(APIClient().post("/api/v1/invitations/accept", body), field, code=text_code(body.get(field)))


def test_accepting_without_a_password_or_with_a_weak_one(tenant_a):
    token = invite(tenant_a, "weak@example.test")
    assert_invalid(APIClient().post("/api/v1/invitations/accept", {"token": token}), "password")
    error = assert_error(APIClient().post("/api/v1/invitations/accept", {"token": token, "password": "123"}),
                         400, "weak_password")
    assert error["fields"]["password"]
    # Neither attempt used the invitation up.
    assert APIClient().post("/api/v1/invitations/accept",
                            {"token": token, "password": "a long passphrase 42"}).status_code == 201


def test_accepting_for_someone_else(tenant_a, tenant_b):
    """Anonymous for an existing account must sign in; signed in as another email is refused."""
    existing = tenant_b.member("viewer")
    token = invite(tenant_a, existing.email)
    assert_error(APIClient().post("/api/v1/invitations/accept", {"token": token, "password": "a long passphrase 42"}),
                 401, "sign_in_required")

    other = APIClient()
    other.force_login(tenant_b.owner)
    assert_error(other.post("/api/v1/invitations/accept", {"token": token}), 403, "invitation_email_mismatch")
    with tenant_scope(tenant_a.organization):
        assert not Membership.objects.filter(user__in=[existing, tenant_b.owner]).exists()


def test_deep_nesting_is_refused_even_when_the_recursion_limit_was_raised(tenant_a):
    """py_ecc (loaded with the chain client) raises the recursion limit to 100,000; decoding a deeply
    nested document would then crash the process, so depth is checked before decoding."""
    import sys

    import py_ecc  # noqa: F401  (raises the limit, as in a web process that has verified a file)

    assert sys.getrecursionlimit() >= 100_000
    response = tenant_a.client().post("/api/v1/projects", "[" * 200_000, content_type="application/json")
    assert_error(response, 400, "malformed_request")
    fine = tenant_a.client().post("/api/v1/projects", '{"name": "[{[{ brackets in a string are fine"}',
                                  content_type="application/json")
    assert fine.status_code == 201
