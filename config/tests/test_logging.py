"""JSON logs: one object per line, with the request id (the one the response returns) and, for a step's
lines, its job, step and organization; an incoming X-Request-ID is kept only when it is plain."""
from __future__ import annotations

import io
import json
import logging
import re

import pytest
from django.test import Client

from accounts.audit import Actor
from config.logging import JsonFormatter
from config.tenancy import dangerously_unscoped, tenant_scope
from generation import services
from generation.models import Step
from generation.queue.worker import run_until_idle


@pytest.fixture
def json_lines():
    """Lines written through the JSON formatter by any logger while the test runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


@pytest.mark.django_db
def test_a_request_log_line_carries_the_request_id_of_the_response(json_lines):
    response = Client().get("/no-such-page-for-the-log")
    assert response.status_code == 404
    request_id = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    lines = [line for line in json_lines() if "no-such-page-for-the-log" in line["message"]]
    assert lines, json_lines()
    line = lines[0]
    assert line["request_id"] == request_id and line["level"] == "WARNING" and line["logger"] == "django.request"
    assert set(line) >= {"time", "level", "logger", "message", "request_id"}


@pytest.mark.django_db
@pytest.mark.parametrize("incoming, kept", [
    ("lb-7f3a9c2e.req-0001", True),
    ("x" * 129, False),  # too long
    ("abc def", False),  # a space
    ("abc\r\nSet-Cookie: a=b", False),  # header injection
    ("", False),
])
def test_incoming_request_id_is_kept_only_when_plain(incoming, kept, json_lines):
    response = Client().get("/api/v1/health", HTTP_X_REQUEST_ID=incoming)
    if kept:
        assert response["X-Request-ID"] == incoming
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"]), response["X-Request-ID"]


@pytest.mark.django_db(transaction=True)
def test_a_step_log_line_carries_its_job_step_and_organization(tenant_a, tenant_b, tmp_path, settings, json_lines,
                                                               django_capture_on_commit_callbacks):
    project = tenant_a.project("Logs")
    with tenant_scope(tenant_a.organization), django_capture_on_commit_callbacks(execute=True):
        job, _ = services.job_create(organization=tenant_a.organization, actor=Actor(user=tenant_a.owner),
                                     project_id=project.pk, topic="Fog over a mountain railway",
                                     options={"duration_s": 6, "resolution": "480p", "shots": 2})
    # Storage breaks: the first step with a file to keep (a frame) fails, and says so in the log.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings.MEDIA_ROOT = blocker
    while True:
        with django_capture_on_commit_callbacks(execute=True):
            if not run_until_idle():
                break
    with dangerously_unscoped():
        frame_ids = {str(pk) for pk in Step.objects.filter(job=job, stage="frame").values_list("id", flat=True)}
    failures = [line for line in json_lines() if line["message"].startswith("step ") and "failed" in line["message"]]
    assert failures, json_lines()
    line = failures[0]
    assert line["job_id"] == str(job.pk) and line["step_id"] in frame_ids
    assert line["organization_id"] == str(tenant_a.organization.pk)
    assert line["level"] == "ERROR" and "Traceback" in line["exc_info"] and "request_id" not in line
