"""One registry of error codes per app (config/error_codes.py, <app>/error_codes.py): every code a
service raises is a member, codes are unique with one HTTP status each, and the API schema names, per
operation and status, the codes it can answer."""
from __future__ import annotations

import ast

import pytest

from accounts.error_codes import AccountsErrors
from config.error_codes import KernelErrors, error_codes_all
from config.errors import Conflict, DomainError
from config.tests.test_layering import project_modules
from generation.error_codes import GenerationErrors
from projects.error_codes import ProjectsErrors
from rights.error_codes import RightsErrors

APPS = (KernelErrors, AccountsErrors, ProjectsErrors, RightsErrors, GenerationErrors)


def literal_codes() -> list[str]:
    """`code="..."` in a call, `code = "..."` in a class body, or a literal first argument of error_body()."""
    found = []
    for module, path in sorted(project_modules().items()):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    literal = isinstance(keyword.value, ast.JoinedStr) or (
                        isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str))
                    if keyword.arg == "code" and literal:  # (a websocket's close code is a number)
                        found.append(f"{module}:{node.lineno} code={ast.unparse(keyword.value)}")
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name == "error_body" and node.args and isinstance(node.args[0], ast.Constant):
                    found.append(f"{module}:{node.lineno} error_body({node.args[0].value!r})")
            if isinstance(node, ast.ClassDef):
                for statement in node.body:
                    if (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant)
                            and any(getattr(target, "id", "") == "code" for target in statement.targets)):
                        found.append(f"{module}:{statement.lineno} class {node.name}: code = {statement.value.value!r}")
    return found


def test_every_raised_code_is_a_member_of_a_registry():
    assert not literal_codes(), "error codes written inline (add them to the app's error_codes.py):\n" + \
        "\n".join(f"  {line}" for line in literal_codes())


def test_the_check_sees_an_inline_code(tmp_path, monkeypatch):
    """The scan finds each form it refuses, in a module it reads."""
    import config.tests.test_layering as layering

    package = tmp_path / "config"
    package.mkdir()
    (package / "inline.py").write_text('def f():\n    raise DomainError("no", code="made_up")\n\n\n'
                                       'class Refused(Exception):\n    code = "also_made_up"\n\n\n'
                                       'def g():\n    return error_body("made_up_too", "x")\n')
    monkeypatch.setattr(layering, "project_modules", lambda: {"config.inline": package / "inline.py"})
    monkeypatch.setitem(globals(), "project_modules", layering.project_modules)
    assert sorted(line.split(" ", 1)[1] for line in literal_codes()) == [
        "class Refused: code = 'also_made_up'", "code='made_up'", "error_body('made_up_too')"]


def test_codes_are_unique_and_each_has_one_error_status():
    codes = [code for enum in APPS for code in enum]
    assert len({str(code) for code in codes}) == len(codes)
    assert set(codes) <= set(error_codes_all())
    for code in codes:
        assert 400 <= code.status <= 599, code
        assert code.description and code.description.endswith((".", ")")), code
        assert str(code) == code.value and code == code.value  # answered and stored as the plain string


def test_a_domain_error_answers_its_codes_status():
    assert DomainError("x", code=GenerationErrors.BUDGET_EXCEEDED).status == 402
    assert Conflict("x").code == KernelErrors.CONFLICT and Conflict("x").status == 409
    assert DomainError("x").code == KernelErrors.INVALID
    assert DomainError("x", code=AccountsErrors.INVITATION_EXPIRED, status=409).status == 409


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def _response(schema, path: str, method: str, status: int) -> dict:
    return schema["paths"][path][method]["responses"][str(status)]


def test_each_operation_names_the_codes_it_can_answer(schema):
    cancel = _response(schema, "/api/v1/jobs/{job_id}/cancel", "post", 409)
    assert cancel["x-error-codes"] == ["job_finished"]
    assert "`job_finished`: The job already finished." in cancel["description"]
    create = schema["paths"]["/api/v1/jobs"]["post"]["responses"]
    assert create["402"]["x-error-codes"] == ["budget_exceeded"]
    assert create["422"]["x-error-codes"] == ["content_refused"]
    assert "idempotency_mismatch" in create["409"]["x-error-codes"]
    # the general codes of a status, wherever it is answered
    assert {"missing_scope", "organization_suspended"} <= set(create["403"]["x-error-codes"])
    assert "rate_limited" in create["429"]["x-error-codes"]
    verify = schema["paths"]["/api/v1/verify"]["post"]["responses"]
    assert {"media_timeout", "verify_busy"} <= set(verify["503"]["x-error-codes"])
    assert "unsupported_type" in verify["415"]["x-error-codes"]


def test_every_declared_code_is_in_its_operations_schema(schema):
    from drf_spectacular.generators import EndpointEnumerator

    declared = 0
    for path, _, method, callback in EndpointEnumerator().get_api_endpoints():
        for code in getattr(callback.cls, "error_codes", {}).get(method, ()):
            declared += 1
            response = schema["paths"][path][method.lower()]["responses"][str(code.status)]
            assert str(code) in response["x-error-codes"], (path, method, code)
    assert declared >= 30
