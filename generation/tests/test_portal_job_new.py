"""The portal's jobs list, new job form and its estimate (generation/portal/new_job.py): filters, the
same validation and refusals as POST /api/v1/jobs, templates, the budget shown before submitting,
roles, tenancy, and a list whose query count does not grow with the number of jobs."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.audit import Actor
from config.tenancy import tenant_scope
from generation.models import GenerationPolicy, Job, JobStatus
from projects.templates import template_create

HTMX = {"HTTP_HX_REQUEST": "true"}


def make_jobs(tenant, project, count: int, *, status: str = JobStatus.COMPLETED, cost: str = "0.25",
              label: str = "Topic") -> list[Job]:
    with tenant_scope(tenant.organization):
        return [Job.objects.create(organization=tenant.organization, project=project, topic=f"{label} {n}",
                                   options={"duration_s": 8, "shots": 2}, status=status, progress=0.5,
                                   cost=Decimal(cost), created_by=tenant.owner) for n in range(count)]


def set_policy(tenant, **fields) -> GenerationPolicy:
    with tenant_scope(tenant.organization):
        return GenerationPolicy.objects.create(organization=tenant.organization, **fields)


def form_data(project, **changes) -> dict:
    data = {"project": str(project.pk), "topic": "Paper boats on a canal at dusk", "style": "",
            "duration_s": "20", "aspect_ratio": "9:16", "resolution": "480p", "shots": "4", "voice": "",
            "template": ""}
    data.update(changes)
    return data


def html_of(response, status: int = 200) -> str:
    assert response.status_code == status, (response.status_code, response.content[:500])
    return response.content.decode()


# --- the list ----------------------------------------------------------------------------------

def test_list_shows_jobs_with_links_and_filters_by_status_and_project(client, tenant_a):
    alpha, beta = tenant_a.project("Alpha"), tenant_a.project("Beta")
    done = make_jobs(tenant_a, alpha, 1, label="Alpha done")[0]
    failed = make_jobs(tenant_a, beta, 1, status=JobStatus.FAILED, label="Beta failed")[0]
    client.force_login(tenant_a.member("viewer"))
    html = html_of(client.get("/jobs/"))
    assert f'href="/jobs/{done.pk}/"' in html and f'href="/jobs/{failed.pk}/"' in html
    assert 'class="badge completed"' in html and 'class="badge failed"' in html
    html = html_of(client.get("/jobs/?status=failed"))
    assert "Beta failed" in html and "Alpha done" not in html
    html = html_of(client.get(f"/jobs/?project={alpha.pk}"))
    assert "Alpha done" in html and "Beta failed" not in html
    assert 'id="jobs-empty"' in html_of(client.get(f"/jobs/?project={alpha.pk}&status=failed"))
    # An unknown filter filters nothing out and is said to be invalid, never a 500.
    html = html_of(client.get("/jobs/?status=nonsense&project=not-a-uuid"))
    assert "Alpha done" in html and "Beta failed" in html and 'class="error"' in html


def test_list_empty_state(client, tenant_a):
    client.force_login(tenant_a.owner)
    html = html_of(client.get("/jobs/"))
    assert 'id="jobs-empty"' in html and "Create a project first" in html


def test_list_hides_new_job_from_a_viewer(client, tenant_a):
    client.force_login(tenant_a.member("viewer"))
    assert 'id="job-new-link"' not in html_of(client.get("/jobs/"))
    client.force_login(tenant_a.member("producer"))
    assert 'id="job-new-link"' in html_of(client.get("/jobs/"))


def test_list_never_shows_another_organizations_jobs(client, tenant_a, tenant_b):
    secret = tenant_a.project("Alpha secret")
    make_jobs(tenant_a, secret, 2, label="Alpha confidential")
    make_jobs(tenant_b, tenant_b.project("Beta"), 1, label="Beta public")
    client.force_login(tenant_b.owner)
    for url in ("/jobs/", f"/jobs/?project={secret.pk}"):
        html = html_of(client.get(url))
        assert "Alpha confidential" not in html and "Alpha secret" not in html


def test_list_query_count_is_fixed(client, tenant_a, tenant_b):
    def count(tenant) -> int:
        client.force_login(tenant.owner)
        with CaptureQueriesContext(connection) as queries:
            html_of(client.get("/jobs/"))
        return len(queries)

    make_jobs(tenant_a, tenant_a.project("A"), 2)
    for n in range(3):
        make_jobs(tenant_b, tenant_b.project(f"B{n}"), 10)
    few, many = count(tenant_a), count(tenant_b)
    assert few == many, (few, many)
    assert many <= 8, many


# --- the new job form --------------------------------------------------------------------------

def test_form_renders_with_the_defaults_and_the_project_preselected(client, tenant_a):
    project = tenant_a.project("Alpha")
    client.force_login(tenant_a.member("producer"))
    html = html_of(client.get(f"/jobs/new/?project={project.pk}"))
    assert f'<option value="{project.pk}" selected>Alpha</option>' in html
    assert 'name="duration_s" value="30"' in html and 'name="shots" value="8"' in html
    assert 'hx-post="/jobs/new/estimate"' in html and 'aria-live="polite"' in html
    for label in ("Topic", "Style", "Aspect ratio", "Resolution", "Voice"):
        assert f">{label}</label>" in html


def test_form_without_projects_says_what_to_do(client, tenant_a):
    client.force_login(tenant_a.owner)
    assert 'id="no-projects"' in html_of(client.get("/jobs/new/"))


def test_submit_starts_the_job_through_the_service_and_opens_its_page(client, tenant_a):
    project = tenant_a.project("Alpha")
    client.force_login(tenant_a.member("producer"))
    response = client.post("/jobs/new/", form_data(project, style="nature", voice="alloy"))
    with tenant_scope(tenant_a.organization):
        job = Job.objects.get()
        assert job.steps.exists()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.project_id == project.pk and job.style == "nature" and job.topic == "Paper boats on a canal at dusk"
    assert (job.options["duration_s"], job.options["shots"], job.options["aspect_ratio"], job.options["resolution"],
            job.options["voice"]) == (20, 4, "9:16", "480p", "alloy")


@pytest.mark.parametrize("changes, field", [
    ({"topic": "ab"}, "topic"),
    ({"duration_s": "400"}, "duration_s"),
    ({"shots": "30"}, "shots"),
    ({"duration_s": "5", "shots": "8"}, "shots"),  # less than a second a shot: job_options refuses it
    ({"aspect_ratio": "4:3"}, "aspect_ratio"),
    ({"style": "baroque"}, "style"),
])
def test_invalid_settings_are_refused_on_their_field(client, tenant_a, changes, field):
    project = tenant_a.project("Alpha")
    client.force_login(tenant_a.owner)
    html = html_of(client.post("/jobs/new/", form_data(project, **changes)), 400)
    assert f'id="id_{field}-errors"' in html
    with tenant_scope(tenant_a.organization):
        assert not Job.objects.exists()


def test_budget_exceeded_and_content_refused_are_shown_on_the_form(client, tenant_a):
    project = tenant_a.project("Alpha")
    client.force_login(tenant_a.owner)
    set_policy(tenant_a, monthly_budget=Decimal("1.00"), blocked_terms=["forbidden"])
    html = html_of(client.post("/jobs/new/", form_data(project, topic="A forbidden topic")), 422)
    assert 'id="job-form-errors"' in html and "blocked term" in html
    make_jobs(tenant_a, project, 1, cost="5.00")
    html = html_of(client.post("/jobs/new/", form_data(project)), 402)
    assert 'id="job-form-errors"' in html and "monthly budget" in html
    with tenant_scope(tenant_a.organization):
        assert Job.objects.count() == 1


def test_template_fills_the_form_and_the_job_records_it(client, tenant_a):
    project = tenant_a.project("Alpha")
    with tenant_scope(tenant_a.organization):
        template = template_create(organization=tenant_a.organization, name="House vertical",
                                   settings={"duration_s": 15, "shots": 5, "aspect_ratio": "9:16",
                                             "resolution": "1080p", "style": "urban"},
                                   actor=Actor(user=tenant_a.owner))
    client.force_login(tenant_a.owner)
    html = html_of(client.get(f"/jobs/new/?template={template.pk}&project={project.pk}"))
    assert 'id="template-chosen"' in html and "House vertical" in html
    assert 'name="duration_s" value="15"' in html and 'name="shots" value="5"' in html
    assert '<option value="9:16" selected>' in html and '<option value="1080p" selected>' in html
    assert '<option value="urban" selected>' in html and f'name="template" value="{template.pk}"' in html
    response = client.post("/jobs/new/", form_data(project, template=str(template.pk), duration_s="15", shots="5",
                                                   aspect_ratio="9:16", resolution="1080p", style="urban"))
    assert response.status_code == 302
    with tenant_scope(tenant_a.organization):
        job = Job.objects.get()
    assert job.template_snapshot["name"] == "House vertical" and job.options["duration_s"] == 15


def test_public_templates_are_offered_and_other_private_ones_are_not(client, tenant_a, tenant_b):
    with tenant_scope(tenant_b.organization):
        public = template_create(organization=tenant_b.organization, name="Beta public", is_public=True,
                                 actor=Actor(user=tenant_b.owner))
        private = template_create(organization=tenant_b.organization, name="Beta private",
                                  actor=Actor(user=tenant_b.owner))
    project = tenant_a.project("Alpha")
    client.force_login(tenant_a.owner)
    html = html_of(client.get("/jobs/new/"))
    assert f'<option value="{public.pk}"' in html and "Beta private" not in html
    html = html_of(client.get(f"/jobs/new/?template={private.pk}"))
    assert "Beta private" not in html and 'id="template-chosen"' not in html
    html_of(client.post("/jobs/new/", form_data(project, template=str(private.pk))), 404)
    with tenant_scope(tenant_a.organization):
        assert not Job.objects.exists()


def test_viewer_and_reviewer_cannot_open_or_post_the_form(client, tenant_a):
    project = tenant_a.project("Alpha")
    for role in ("viewer", "reviewer"):
        client.force_login(tenant_a.member(role))
        assert client.get("/jobs/new/").status_code == 403
        assert client.post("/jobs/new/", form_data(project)).status_code == 403
        assert client.post("/jobs/new/estimate", form_data(project), **HTMX).status_code == 403
    with tenant_scope(tenant_a.organization):
        assert not Job.objects.exists()


def test_another_organizations_project_is_refused(client, tenant_a, tenant_b):
    secret = tenant_a.project("Alpha secret")
    tenant_b.project("Beta")
    client.force_login(tenant_b.owner)
    html = html_of(client.get(f"/jobs/new/?project={secret.pk}"))
    assert "Alpha secret" not in html
    html_of(client.post("/jobs/new/", form_data(secret)), 400)
    with tenant_scope(tenant_a.organization):
        assert not Job.objects.exists()


# --- the estimate ------------------------------------------------------------------------------

def test_estimate_shows_cost_spend_and_budget_before_submitting(client, tenant_a):
    project = tenant_a.project("Alpha")
    make_jobs(tenant_a, project, 1, cost="0.40")
    set_policy(tenant_a, monthly_budget=Decimal("10.00"))
    client.force_login(tenant_a.owner)
    html = html_of(client.post("/jobs/new/estimate", form_data(project), **HTMX))
    assert 'id="estimate-cost">0.00<' in html and 'id="estimate-month-spent">0.40<' in html
    assert 'id="estimate-month-budget">10.00<' in html and 'data-exceeds="false"' in html
    assert "<html" not in html  # a fragment

    set_policy_budget = Decimal("0.10")
    with tenant_scope(tenant_a.organization):
        GenerationPolicy.objects.update(monthly_budget=set_policy_budget)
    html = html_of(client.post("/jobs/new/estimate", form_data(project), **HTMX))
    assert 'data-exceeds="true"' in html and "monthly budget" in html
    with tenant_scope(tenant_a.organization):
        assert Job.objects.count() == 1  # the estimate saves nothing


def test_estimate_without_a_budget_and_with_bad_settings(client, tenant_a):
    project = tenant_a.project("Alpha")
    client.force_login(tenant_a.owner)
    html = html_of(client.post("/jobs/new/estimate", form_data(project), **HTMX))
    assert "No limit" in html and 'data-exceeds="false"' in html
    html = html_of(client.post("/jobs/new/estimate", form_data(project, shots="99"), **HTMX))
    assert 'id="estimate-problem"' in html
    assert client.get("/jobs/new/estimate").status_code == 405


def test_estimate_button_works_without_script(client, tenant_a):
    project = tenant_a.project("Alpha")
    client.force_login(tenant_a.owner)
    html = html_of(client.post("/jobs/new/", {**form_data(project), "estimate": "1"}))
    assert 'id="estimate-cost"' in html
    with tenant_scope(tenant_a.organization):
        assert not Job.objects.exists()


def test_estimate_counts_only_the_organizations_own_spend(client, tenant_a, tenant_b):
    make_jobs(tenant_a, tenant_a.project("Alpha"), 2, cost="7.00")
    project = tenant_b.project("Beta")
    client.force_login(tenant_b.owner)
    html = html_of(client.post("/jobs/new/estimate", form_data(project), **HTMX))
    assert 'id="estimate-month-spent">0.00<' in html


def test_the_voice_is_chosen_from_the_installed_voices_with_a_sample_of_each(tenant_a):
    tenant_a.project("Voices")
    producer = tenant_a.client("producer")
    page = producer.get("/jobs/new/")
    assert page.status_code == 200
    assert b'<option value="cmn"' in page.content and b'<option value="none"' in page.content
    assert b"/jobs/voices/en.wav" in page.content and b"/jobs/voices/cmn.wav" in page.content
    sample = producer.get("/jobs/voices/cmn.wav")
    assert sample.status_code == 200 and sample["Content-Type"] == "audio/wav"
    import io
    import wave

    with wave.open(io.BytesIO(sample.content)) as wav:
        assert wav.getnframes() / wav.getframerate() > 1.0  # a sentence, spoken
    assert producer.get("/jobs/voices/nobody.wav").status_code == 404
    assert tenant_a.client("viewer").get("/jobs/voices/en.wav").status_code == 403
