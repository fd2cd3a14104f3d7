"""The portal's project pages (projects/portal/projects.py): the list with job counts and its create form, a
project with its jobs and assets, edit and delete; by role, by tenant, and with query counts that do
not grow with the number of projects, jobs and assets."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.tenancy import tenant_scope
from generation.models import Job, JobStatus
from projects.models import Project
from rights.models import Content


def make_jobs(tenant, project, count: int, *, status: str = JobStatus.COMPLETED) -> list[Job]:
    with tenant_scope(tenant.organization):
        return [Job.objects.create(organization=tenant.organization, project=project, topic=f"Topic {n} of {project.name}",
                                   options={"duration_s": 8, "shots": 2}, status=status, progress=1.0,
                                   cost=Decimal("0.25"), created_by=tenant.owner) for n in range(count)]


def make_contents(tenant, jobs) -> list[Content]:
    with tenant_scope(tenant.organization):
        return [Content.objects.create(organization=tenant.organization, content_id=f"C{tenant.slug[-1]}{n:06d}",
                                       kind="video", source="generated", job=job, sha256=f"{n:064d}")
                for n, job in enumerate(jobs)]


def page(client, url, **kwargs):
    response = client.get(url, **kwargs)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# --- the list ----------------------------------------------------------------------------------

def test_list_shows_projects_with_job_counts_and_a_member_creates_one(client, tenant_a):
    project = tenant_a.project("Alpha trailer", "A launch film")
    make_jobs(tenant_a, project, 3)
    tenant_a.project("Empty one")
    client.force_login(tenant_a.member("producer"))
    html = page(client, "/projects/")
    assert "Alpha trailer" in html and "Empty one" in html and 'id="project-create-form"' in html
    assert f'id="project-row-{project.pk}"' in html
    row = html.split(f'id="project-row-{project.pk}"')[1].split("</tr>")[0]
    assert '<td data-label="Jobs" class="job-count">3</td>' in row

    response = client.post("/projects/", {"name": "Beta reel", "description": "Second"})
    with tenant_scope(tenant_a.organization):
        created = Project.objects.get(name="Beta reel")
    assert response.status_code == 302 and response["Location"] == f"/projects/{created.pk}/"
    assert created.description == "Second"


def test_create_refusals_are_shown_on_the_form(client, tenant_a):
    tenant_a.project("Taken")
    client.force_login(tenant_a.owner)
    response = client.post("/projects/", {"name": "Taken"})
    assert response.status_code == 400
    assert "A project with this name exists." in response.content.decode() or "taken" in response.content.decode()
    assert client.post("/projects/", {"name": ""}).status_code == 400


def test_empty_list_says_what_to_do(client, tenant_a):
    client.force_login(tenant_a.owner)
    html = page(client, "/projects/")
    assert 'id="projects-empty"' in html and "No projects yet" in html
    client.force_login(tenant_a.member("viewer"))
    assert "Members who can write projects" in page(client, "/projects/")


def test_viewer_sees_no_create_form_and_a_forged_create_is_forbidden(client, tenant_a):
    tenant_a.project("Alpha")
    client.force_login(tenant_a.member("viewer"))
    html = page(client, "/projects/")
    assert "Alpha" in html and "project-create-form" not in html
    assert client.post("/projects/", {"name": "Forged"}).status_code == 403
    with tenant_scope(tenant_a.organization):
        assert not Project.objects.filter(name="Forged").exists()


def test_list_never_shows_another_organizations_projects(client, tenant_a, tenant_b):
    tenant_a.project("Alpha secret")
    tenant_b.project("Beta visible")
    client.force_login(tenant_b.owner)
    html = page(client, "/projects/")
    assert "Beta visible" in html and "Alpha secret" not in html
    assert "Alpha secret" not in page(client, "/projects/?search=Alpha")


def test_list_query_count_is_fixed(client, tenant_a, tenant_b):
    def count(tenant) -> int:
        client.force_login(tenant.owner)
        with CaptureQueriesContext(connection) as queries:
            page(client, "/projects/")
        return len(queries)

    for n in range(2):
        make_jobs(tenant_a, tenant_a.project(f"A{n}"), 2)
    for n in range(30):
        make_jobs(tenant_b, tenant_b.project(f"B{n}"), 3)
    few, many = count(tenant_a), count(tenant_b)
    assert few == many, (few, many)
    assert many <= 8, many


# --- a project ---------------------------------------------------------------------------------

def test_detail_shows_jobs_assets_and_actions_for_a_producer(client, tenant_a):
    project = tenant_a.project("Alpha trailer", "Launch film")
    done, running = make_jobs(tenant_a, project, 1)[0], make_jobs(tenant_a, project, 1, status=JobStatus.COMPOSING)[0]
    content = make_contents(tenant_a, [done])[0]
    client.force_login(tenant_a.member("producer"))
    html = page(client, f"/projects/{project.pk}/")
    assert "Alpha trailer" in html and "Launch film" in html
    assert f'href="/jobs/{done.pk}/"' in html and f'href="/jobs/{running.pk}/"' in html
    assert 'class="badge completed"' in html and 'class="badge composing"' in html
    assert f'href="/jobs/{done.pk}/thumbnail"' in html and f'href="/jobs/{running.pk}/thumbnail"' not in html
    assert content.content_id in html and f'href="/assets/{content.pk}/"' in html
    assert f'href="/jobs/new/?project={project.pk}"' in html
    assert 'id="project-edit-link"' in html and 'id="project-delete-link"' in html


def test_detail_empty_states(client, tenant_a):
    project = tenant_a.project("Alpha")
    client.force_login(tenant_a.owner)
    html = page(client, f"/projects/{project.pk}/")
    assert 'id="jobs-empty"' in html and 'id="assets-empty"' in html


def test_edit_and_delete(client, tenant_a):
    project = tenant_a.project("Alpha")
    make_jobs(tenant_a, project, 2)
    client.force_login(tenant_a.owner)
    assert 'id="project-edit-form"' in page(client, f"/projects/{project.pk}/edit")
    response = client.post(f"/projects/{project.pk}/edit", {"name": "Alpha 2", "description": "New"})
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.pk}/"
    tenant_a.project("Taken")
    assert client.post(f"/projects/{project.pk}/edit", {"name": "Taken"}).status_code == 400
    assert "2 jobs" in page(client, f"/projects/{project.pk}/delete")
    response = client.post(f"/projects/{project.pk}/delete")
    assert response.status_code == 302 and response["Location"] == "/projects/"
    with tenant_scope(tenant_a.organization):
        assert not Project.objects.filter(pk=project.pk).exists()
        assert not Job.objects.filter(project_id=project.pk).exists()


@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_roles_without_write_see_no_buttons_and_forged_writes_are_forbidden(client, tenant_a, role):
    project = tenant_a.project("Alpha")
    client.force_login(tenant_a.member(role))
    html = page(client, f"/projects/{project.pk}/")
    for button in ("project-edit-link", "project-delete-link", "job-new-link"):
        assert button not in html
    assert client.get(f"/projects/{project.pk}/edit").status_code == 403
    assert client.post(f"/projects/{project.pk}/edit", {"name": "Forged"}).status_code == 403
    assert client.post(f"/projects/{project.pk}/delete").status_code == 403
    with tenant_scope(tenant_a.organization):
        assert Project.objects.get(pk=project.pk).name == "Alpha"


def test_another_organization_gets_404_for_every_project_page(client, tenant_a, tenant_b):
    project = tenant_a.project("Alpha secret")
    make_contents(tenant_a, make_jobs(tenant_a, project, 1))
    client.force_login(tenant_b.owner)
    for url in (f"/projects/{project.pk}/", f"/projects/{project.pk}/edit", f"/projects/{project.pk}/delete"):
        assert client.get(url).status_code == 404
        assert client.post(url, {"name": "Hijacked"}).status_code == 404
    with tenant_scope(tenant_a.organization):
        assert Project.objects.get(pk=project.pk).name == "Alpha secret"


def test_detail_query_count_is_fixed(client, tenant_a, tenant_b):
    def count(tenant, project) -> int:
        client.force_login(tenant.owner)
        with CaptureQueriesContext(connection) as queries:
            page(client, f"/projects/{project.pk}/")
        return len(queries)

    few = tenant_a.project("Few")
    make_contents(tenant_a, make_jobs(tenant_a, few, 2))
    many = tenant_b.project("Many")
    make_contents(tenant_b, make_jobs(tenant_b, many, 30))
    few_count, many_count = count(tenant_a, few), count(tenant_b, many)
    assert few_count == many_count, (few_count, many_count)
    assert many_count <= 11, many_count
