"""Issue #5 in a real browser (headless Chromium): a producer signs in, creates a project, starts a job
from a template, watches it progress over the websocket without reloading, a reviewer approves, the
producer plays the video, edits and regenerates a shot, sees it complete again, opens the certificate,
downloads the video, and a signed-out visitor verifies that file on the public page. A member of another
studio gets a 404 on the job. A viewer sees no action buttons and a forged POST is refused.
Every main page is screenshotted at desktop and phone width into var/screenshots/."""
from __future__ import annotations

import re

import pytest

from accounts.audit import Actor
from config.tenancy import tenant_scope
from accounts.tests.browser.conftest import screenshot, sign_in, with_password

pytestmark = pytest.mark.browser

# The smallest job the validation allows: quick with the offline providers.
SHORT = {"duration_s": 5, "resolution": "480p", "shots": 1, "aspect_ratio": "16:9"}
RUN_S = 120_000  # ms: the longest a pipeline run may take here (a loaded CI machine)


def make_template(tenant, name: str, **settings):
    from projects.templates import template_create

    with tenant_scope(tenant.organization):
        return template_create(organization=tenant.organization, name=name, description="Short, for the tests.",
                               settings={**SHORT, **settings}, actor=Actor(user=tenant.owner))


def job_status_is(page, *statuses: str, timeout: int = RUN_S) -> None:
    page.wait_for_function("(statuses) => statuses.includes(document.getElementById('job-status').dataset.status)",
                           arg=list(statuses), timeout=timeout)


def progress(page) -> int:
    return int(page.eval_on_selector("#job-progress", "bar => bar.value"))


def mark_page(page) -> None:
    """A value that only survives while no navigation or reload happens; and a record of every value
    the progress bar shows from now on."""
    page.evaluate("""() => {
        window.__marker = 1;
        window.__progress = [];
        window.__statuses = [document.getElementById('job-status').dataset.status];
        setInterval(() => {
            const bar = document.getElementById('job-progress'), seen = window.__progress;
            if (bar && seen[seen.length - 1] !== Number(bar.value)) seen.push(Number(bar.value));
            const status = document.getElementById('job-status').dataset.status, statuses = window.__statuses;
            if (statuses[statuses.length - 1] !== status) statuses.push(status);
        }, 20);
    }""")


def statuses_seen(page) -> int:
    return page.evaluate("window.__statuses.length")


def job_status_becomes(page, status: str, after: int, timeout: int = RUN_S) -> None:
    """Wait for `status` to be shown again after the `after` first statuses this page went through."""
    page.wait_for_function("([status, after]) => window.__statuses.slice(after).includes(status)",
                           arg=[status, after], timeout=timeout)


def still_marked(page) -> bool:
    return page.evaluate("window.__marker === 1")


def test_studio_flow_from_sign_in_to_public_verification(new_context, tenant_a, tenant_b, tmp_path):
    producer = with_password(tenant_a.member("producer"))
    reviewer = with_password(tenant_a.member("reviewer"))
    outsider = with_password(tenant_b.member("producer"))
    template = make_template(tenant_a, "Reviewed short", approval_required=True)

    page = new_context().new_page()
    failures = []
    page.on("pageerror", lambda exc: failures.append(str(exc)))
    sign_in(page, producer)

    project_id, project_url = create_project_in_browser(page, "Harbour launch film")
    job_url = start_job_in_browser(page, project_id, template, "A lighthouse keeper paints the harbour at dawn")
    mark_page(page)
    screenshot(page, "job-running")

    # Live over the websocket, no reload: the job runs until it waits for the reviewer.
    job_status_is(page, "awaiting_approval")
    assert page.eval_on_selector("#job-page", "node => node.dataset.live") == "websocket"
    assert 0 < progress(page) < 100
    assert page.locator("#job-approve").count() == 0  # a producer cannot approve

    # The reviewer approves in their own browser.
    review = new_context().new_page()
    sign_in(review, reviewer)
    review.goto(job_url)
    screenshot(review, "job-awaiting-approval")
    review.click("#job-approve")
    review.wait_for_selector("#job-approved")

    # The producer's page reaches 100% and shows the video, by itself.
    job_status_is(page, "completed")
    page.wait_for_selector("#job-video")
    assert progress(page) == 100 and still_marked(page)
    seen = page.evaluate("window.__progress")
    assert len([value for value in seen if 0 < value < 100]) >= 2 and seen[-1] == 100, seen
    screenshot(page, "job-completed")

    # The video plays.
    play_video(page)

    # Edit shot 1 inline; saving regenerates it (and the video). Then regenerate it once more.
    page.click("#shot-1-edit")
    page.wait_for_selector("form#shot-1")
    page.fill("#shot-1 textarea[name=description]", "The keeper's brush catches the first light on the water")
    screenshot(page, "job-shot-edit")
    before = statuses_seen(page)
    page.click("#shot-1-save")
    page.wait_for_selector("#shot-1-edited")
    job_status_becomes(page, "awaiting_approval", after=before)
    before = statuses_seen(page)
    page.click("#shot-1-regenerate")
    job_status_becomes(page, "awaiting_approval", after=before)
    assert page.evaluate("window.__statuses").count("awaiting_approval") >= 3, page.evaluate("window.__statuses")
    review.reload()
    review.click("#job-approve")
    review.wait_for_selector("#job-approved")
    job_status_is(page, "completed")
    page.wait_for_selector("#job-video")
    assert progress(page) == 100 and still_marked(page), "the job page reloaded"
    page.wait_for_function("document.getElementById('shot-1').textContent.includes('first light on the water')")

    # The rights panel (refreshed by itself) shows the new video's content and links to its certificate.
    content_id = latest_content_id(tenant_a, job_url)
    page.wait_for_function("(id) => (document.querySelector('#rights-panel [data-field=content-id]') || {})"
                           ".textContent === id", arg=content_id)
    assert still_marked(page)
    screenshot(page, "job-rights")

    # The video file, downloaded as a person would.
    with page.expect_download() as download_info:
        page.click("#job-download")
    video = tmp_path / "downloaded.mp4"
    download_info.value.save_as(video)
    assert video.stat().st_size > 1000

    with page.expect_navigation():
        page.click("#rights-certificate-link")
    assert f"/certificates/{content_id}/" in page.url
    assert page.locator("#certificate-title").is_visible()
    assert content_id in page.locator("#certificate-facts").inner_text()
    screenshot(page, "certificate")

    # The other main pages, now that they have something to show.
    tour(page, project_url)

    # A signed-out visitor verifies the downloaded file on the public page.
    visitor = new_context().new_page()
    visitor.goto("/verify/")
    screenshot(visitor, "verify")
    visitor.set_input_files("#verify-form input[type=file]", str(video))
    visitor.click("#verify-submit")
    visitor.wait_for_selector("#verify-verdict", timeout=60_000)
    assert visitor.eval_on_selector("#verify-verdict", "node => node.dataset.verdict") == "registered"
    assert visitor.locator(f"#verify-matches [data-content-id='{content_id}']").count() == 1
    screenshot(visitor, "verify-registered")

    # A member of another studio: the job's URL answers 404.
    other = new_context().new_page()
    sign_in(other, outsider)
    response = other.goto(job_url)
    assert response.status == 404
    assert "lighthouse keeper" not in other.content()
    screenshot(other, "job-other-studio-404")
    response = other.goto(project_url)
    assert response.status == 404

    assert not failures, failures


TOUR = (("dashboard", "/"), ("project-detail", "{project}"), ("jobs", "/jobs/"), ("templates", "/templates/"),
        ("team", "/team/"), ("assets", "/assets/"))


def tour(page, project_url: str) -> None:
    for name, url in TOUR:
        url = url.format(project=project_url)
        response = page.goto(url)
        assert response.status == 200, f"{url} answered {response.status}"
        assert page.locator("h1").first.is_visible()
        screenshot(page, name)
    with page.expect_navigation():
        page.locator("#asset-table a[href^='/assets/']").first.click()
    assert page.locator("#rights-panel [data-field=content-id]").is_visible()
    screenshot(page, "asset-detail")


def latest_content_id(tenant, job_url: str) -> str:
    from rights.models import Content

    job_id = re.search(r"/jobs/([0-9a-f-]{36})/", job_url).group(1)
    with tenant_scope(tenant.organization):
        return Content.objects.filter(job_id=job_id).order_by("-created_at").values_list("content_id", flat=True)[0]


def create_project_in_browser(page, name: str) -> tuple[str, str]:
    """With the form on the projects page; returns the project's id and URL."""
    page.goto("/projects/")
    assert page.locator("#projects-empty").is_visible()
    screenshot(page, "projects-empty")
    page.fill("#project-create-form [name=name]", name)
    with page.expect_navigation():
        page.click("#project-create-form button[type=submit]")
    assert page.locator("#project-name").inner_text() == name
    project_url = page.url
    project_id = re.search(r"/projects/([0-9a-f-]{36})/", project_url).group(1)
    page.goto("/projects/")
    assert page.locator(f"#project-row-{project_id}").is_visible()
    screenshot(page, "projects")
    return project_id, project_url


def start_job_in_browser(page, project_id: str, template, topic: str) -> str:
    """On the new-job page: pick the template (its short settings fill the form), see the estimate,
    start; returns the job page's URL."""
    page.goto(f"/jobs/new/?project={project_id}")
    page.select_option("#template-select", str(template.pk))
    with page.expect_navigation():
        page.click("#template-apply")
    assert template.name in page.locator("#template-chosen").inner_text()
    assert page.input_value("#job-form [name=duration_s]") == str(SHORT["duration_s"])
    assert page.input_value("#job-form [name=shots]") == str(SHORT["shots"])
    assert page.input_value("#job-form [name=project]") == project_id
    page.fill("#job-form [name=topic]", topic)
    page.wait_for_selector("#estimate-verdict[data-exceeds=false]")
    screenshot(page, "job-new")
    with page.expect_navigation(url=re.compile(r"/jobs/[0-9a-f-]{36}/$")):
        page.click("#job-submit")
    return page.url


def play_video(page) -> None:
    state = page.evaluate("""async () => {
        const video = document.getElementById('job-video');
        video.muted = true;
        if (video.readyState < 2) {
            await new Promise((resolve) => { video.addEventListener('loadeddata', resolve, {once: true}); video.load(); });
        }
        await video.play();
        const start = video.currentTime;
        await new Promise((resolve) => setTimeout(resolve, 700));
        return {readyState: video.readyState, duration: video.duration, start, now: video.currentTime,
                error: video.error && video.error.code};
    }""")
    assert state["error"] is None and state["readyState"] >= 2, state
    assert state["duration"] > 0 and state["now"] > state["start"], state


def test_a_viewer_sees_no_action_buttons_and_a_forged_post_is_refused(new_context, tenant_a):
    from generation.models import Job
    from generation.services import job_create

    viewer = with_password(tenant_a.member("viewer"))
    template = make_template(tenant_a, "Reviewed short", approval_required=True)
    project = tenant_a.project("Viewer's view")
    with tenant_scope(tenant_a.organization):
        job, _ = job_create(organization=tenant_a.organization, actor=Actor(user=tenant_a.owner),
                            project_id=project.pk, topic="Paper boats drift down a canal", template_id=template.pk)

    page = new_context().new_page()
    sign_in(page, viewer)
    page.goto(f"/jobs/{job.pk}/")
    job_status_is(page, "awaiting_approval")  # where a producer could edit, cancel, and a reviewer approve
    page.wait_for_selector("#shot-1 h3")
    for button in ("#job-approve", "#job-cancel", "#job-retry", "#shot-1-edit", "#shot-1-regenerate"):
        assert page.locator(button).count() == 0, f"a viewer sees {button}"
    assert page.locator("#job-page form[method=post]").count() == 0
    screenshot(page, "job-viewer")
    for url in ("/", "/projects/", f"/projects/{project.pk}/", "/jobs/", "/templates/", "/assets/"):
        assert page.goto(url).status == 200, url
        for control in ("#quick-new-job", "#project-create-submit", "#template-new-link", "#upload-form",
                        "a[href^='/jobs/new/']"):
            assert page.locator(control).count() == 0, f"a viewer sees {control} on {url}"
    assert page.goto("/jobs/new/").status == 403

    # Forged POSTs from the viewer's own signed-in session, with a valid CSRF token: refused.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": token, "Referer": page.url}
    forged = {
        f"/jobs/{job.pk}/approve": {},
        f"/jobs/{job.pk}/cancel": {},
        f"/jobs/{job.pk}/shots/1/edit": {"description": "forged", "camera_movement": "static", "duration_s": "5"},
        f"/jobs/{job.pk}/shots/1/regenerate": {},
        "/projects/": {"name": "Forged project"},
        "/jobs/new/": {"project": str(project.pk), "topic": "Forged job"},
    }
    for url, form in forged.items():
        response = page.request.post(url, form=form, headers=headers, max_redirects=0)
        assert response.status == 403, f"POST {url} by a viewer answered {response.status}"
    with tenant_scope(tenant_a.organization):
        job = Job.objects.get(pk=job.pk)
        assert job.approved_at is None and job.status == "awaiting_approval" and not job.shot_edits
        assert Job.objects.count() == 1 and not project.__class__.objects.filter(name="Forged project").exists()
