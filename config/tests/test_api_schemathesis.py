"""Schemathesis fuzzes every operation of the OpenAPI schema the app serves at /api/v1/schema.

Each generated request goes in twice through the real WSGI application: with an all-scopes API key
of an organization that owns one of every object (about half the cases name those objects in their
path, body or query, the rest random values), and without credentials. No answer may be a server
error, and every answer must be one the schema documents: its status code, content type and body.
The generation is derandomized (a fixed seed per operation), so a run repeats the last one.

Below it, regression tests for what the fuzzing found, in plain requests.
"""
from __future__ import annotations

import json
import re
import socket

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.tests.test_tenant_isolation import A_VALUE_FOR_KWARG, populate

# py_ecc and py-evm (loaded with the chain client on first use) raise the recursion limit, to 100,000
# and 12,288. Loaded now, before Hypothesis runs: loaded during a run, they would raise Hypothesis' own
# lower limit, which then stays (accounts' deep nesting test checks that the limit is 100,000).
import eth  # noqa: E402,F401  isort:skip
import py_ecc  # noqa: E402,F401  isort:skip

MAX_EXAMPLES = 20  # per operation in the fuzzing phase; the coverage phase adds its boundary cases
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _load_schema():
    from config.wsgi import application

    return schemathesis.openapi.from_wsgi(
        "/api/v1/schema", application,
        config=schemathesis.config.SchemathesisConfig.from_dict({
            "seed": 20260601,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "phases": {"stateful": {"enabled": False}},
        }),
    )


schema = _load_schema()
_real_ids: dict[str, str] = {}  # path parameter -> organization A's value, while a test runs
# Body and query fields that name an object: project and template ids (POST /jobs, GET /jobs?project=).
_REAL_FIELDS = {"project": "project_id", "template": "template_id"}


def _with_real_ids(values, names: dict[str, str]):
    """The generated values, or (as often) the same with the objects' fields naming A's real objects."""
    if not isinstance(values, dict) or not _real_ids or not any(key in names for key in values):
        return st.just(values)
    real = {key: _real_ids.get(names[key], value) if key in names else value for key, value in values.items()}
    return st.sampled_from([values, real])


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    # So the handlers behind the lookup run, not only the 404.
    return _with_real_ids(path_parameters, {name: name for name in (path_parameters or {})})


@schema.hook
def flatmap_body(context, body):
    return _with_real_ids(body, _REAL_FIELDS)


@schema.hook
def flatmap_query(context, query):
    return _with_real_ids(query, _REAL_FIELDS)


def _loopback_only(monkeypatch):
    """Fuzzed settings may name any host (a provider's base_url, the default api.openai.com): name
    resolution of anything but the loopback fails here, so no request of this test leaves the machine."""
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name not in ("localhost", "::1") and not name.startswith("127."):
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: refused in this test (loopback only)")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def api_world(db, tenant_a, tenant_b, settings, monkeypatch):
    """Organization A with one of every object (B's exist too); the headers of A's all-scopes key."""
    _loopback_only(monkeypatch)
    settings.API_RATE_LIMITS = {bucket: "1000000/min" for bucket in settings.API_RATE_LIMITS}
    objects = populate(tenant_a, "Alpha")
    populate(tenant_b, "Beta")
    _key, plain = tenant_a.key()
    # As Django's test client does: these handlers would close the test's connection, inside the
    # transaction that pytest-django rolls back after the test.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    _real_ids.update({name: str(value(objects)) for name, value in A_VALUE_FOR_KWARG.items()})
    try:
        yield {"Authorization": f"Bearer {plain}"}
    finally:
        _real_ids.clear()
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_operation(case, api_world):
    case.call_and_validate(headers=api_world, checks=CHECKS)
    case.call_and_validate(checks=CHECKS)  # no credentials


def test_the_fuzzing_names_real_objects(api_world):
    """The substitution above has ids to substitute: one per path parameter of the schema."""
    names = {parameter["name"] for operation in schema.raw_schema["paths"].values()
             for method in operation.values() if isinstance(method, dict)
             for parameter in method.get("parameters", []) if parameter["in"] == "path"}
    assert names and names <= set(_real_ids), names - set(_real_ids)


# --- wrong JSON types, on every operation ---------------------------------------------------------

# For each JSON type the schema states, values of other types a partner's client may send by mistake:
# text for numbers and booleans, numbers for text, 0/1 for booleans, objects and arrays swapped.
WRONG_TYPES = {
    "string": [123, 1.5, True, {}, []],
    "integer": ["5", 5.5, True, {}, []],
    "number": ["5", True, {}, []],
    "boolean": [0, 1, "true", {}, []],
    "array": ["x", 1, {}],
    "object": ["x", 1, []],
}
_JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


def _resolve(node: dict) -> dict:
    """The node with its `$ref` (and a single `allOf`, as drf-spectacular wraps a described ref) followed."""
    components = schema.raw_schema["components"]["schemas"]
    while True:
        if "$ref" in node:
            node = components[node["$ref"].rsplit("/", 1)[-1]]
        elif len(node.get("allOf", ())) == 1:
            node = {**{k: v for k, v in node.items() if k != "allOf"}, **node["allOf"][0]}
        else:
            return node


def _types(node: dict) -> set[str]:
    node = _resolve(node)
    if "type" in node:
        return {node["type"]}
    if "enum" in node:
        return {next(k for k, t in _JSON_TYPES.items() if isinstance(v, t)) for v in node["enum"] if v is not None}
    return set().union(*(_types(member) for member in node.get("oneOf", node.get("anyOf", []))))


def _of_type(value, types: set[str]) -> bool:
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int) and "integer" in types:
        return True
    return any(isinstance(value, _JSON_TYPES[name]) for name in types if name not in ("boolean", "integer"))


def _mismatches(node: dict, path: tuple = ()):
    """(path, wrong value) for every property of an object schema, nested objects' and arrays' items too."""
    node = _resolve(node)
    for name, prop in node.get("properties", {}).items():
        if _resolve(prop).get("readOnly"):
            continue
        yield from _value_mismatches(prop, (*path, name))


def _value_mismatches(prop: dict, path: tuple):
    types = _types(prop)
    for json_type in sorted(types):
        for value in WRONG_TYPES[json_type]:
            if not _of_type(value, types):
                yield path, value
    prop = _resolve(prop)
    if "object" in types:
        yield from _mismatches(prop, path)
    if "array" in types and "items" in prop:
        yield from _value_mismatches(prop["items"], (*path, 0))


def _body(path: tuple, value):
    for step in reversed(path):
        value = [value] if isinstance(step, int) else {step: value}
    return value


def _names(fields, path: tuple) -> bool:
    for step in path:
        if not isinstance(fields, dict) or str(step) not in fields:
            return False
        fields = fields[str(step)]
    return bool(fields)


def _json_body_operations():
    for path, operations in schema.raw_schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {}) if isinstance(operation, dict) else {}
            if "application/json" in content:
                yield method, path, content["application/json"]["schema"]


def test_every_operation_refuses_wrong_json_types(api_world):
    """Each property of every JSON body, in turn, with a value of another JSON type: never accepted,
    never a server error, always 400 `invalid_type` naming the property (config.json_input)."""
    client = Client()
    operations = list(_json_body_operations())
    counts = {"cases": 0, "server errors": 0, "accepted wrong types": 0, "refused without naming the field": 0}
    failures = []
    for method, template, body_schema in operations:
        url = template
        for name in re.findall(r"{(\w+)}", template):
            url = url.replace(f"{{{name}}}", _real_ids[name])
        cases = list(_mismatches(body_schema))
        assert cases, f"{method.upper()} {template}: no property to give a wrong type"
        for path, value in cases:
            counts["cases"] += 1
            response = client.generic(method.upper(), url, json.dumps(_body(path, value)),
                                      content_type="application/json", headers=api_world)
            if response.status_code >= 500:
                counts["server errors"] += 1
            elif response.status_code < 400:
                counts["accepted wrong types"] += 1
            else:
                error = response.json()["error"]
                if error["code"] == "invalid_type" and _names(error["fields"], path):
                    continue
                counts["refused without naming the field"] += 1
            failures.append((method.upper(), template, path, value, response.status_code, response.content[:200]))
    print(f"wrong JSON types: {len(operations)} operations, {counts['cases']} cases; "
          + ", ".join(f"{number} {what}" for what, number in counts.items() if what != "cases"))
    assert not failures, failures[:20]


# --- what the fuzzing found ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "patch", "delete"])
def test_an_unknown_api_path_answers_json_404_to_unsafe_methods(db, method):
    """A mistyped id (no UUID: no route) with POST or DELETE got Django's HTML CSRF page (403)."""
    response = getattr(Client(enforce_csrf_checks=True), method)("/api/v1/projects/not-a-uuid")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such endpoint.", "fields": {}}}


def test_a_job_waits_for_moderation_that_cannot_run(tenant_a):
    """Moderation by openai without openai credentials: job creation answered a bare 500."""
    from generation.models import Job

    client = tenant_a.key_client()
    project = tenant_a.project("Moderated")
    assert client.patch("/api/v1/generation-policy", {"moderation_provider": "openai"}).status_code == 200
    response = client.post("/api/v1/jobs", {"project": str(project.pk), "topic": "A lighthouse keeper"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "moderation_unavailable"
    assert "no api_key configured" in response.json()["error"]["message"]
    from config.tenancy import tenant_scope

    with tenant_scope(tenant_a.organization):
        assert not Job.objects.exists()


@pytest.mark.parametrize("page_size", ["null", "0", "-1", "2.5", ""])
def test_a_page_size_that_is_no_whole_number_is_refused(tenant_a, page_size):
    """`schemathesis run` sent ?page_size=null: DRF used the default page size without a word."""
    response = tenant_a.key_client().get(f"/api/v1/projects?page_size={page_size}")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["page_size"]


def test_a_large_page_size_reads_as_the_largest(tenant_a):
    for number in range(3):
        tenant_a.project(f"P{number}")
    client = tenant_a.key_client()
    assert len(client.get("/api/v1/projects?page_size=2").json()["results"]) == 2
    assert len(client.get("/api/v1/projects?page_size=1000").json()["results"]) == 3


@pytest.mark.parametrize("size", [(1, 1), (15, 64)])
def test_an_image_too_small_for_the_watermark_is_refused(tenant_a, size):
    """schemathesis uploaded a 1x1 PNG to POST /assets: the watermark raised ValueError, a 500."""
    import io

    from PIL import Image

    upload = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(upload, format="PNG")
    upload.seek(0)
    response = tenant_a.key_client().post("/api/v1/assets", {"file": upload}, format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_small" and f"{size[0]}x{size[1]}" in error["message"], error
