"""The portal's job page (generation/portal/jobs.py): render, live fragments, actions by role, files with
ranges, tenancy, and a query count that does not grow with the number of shots and steps."""
from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.tenancy import tenant_scope
from generation.events import job_event
from generation.models import Artifact, Job, JobStatus, JobVersion, Stage, Step, StepStatus
from generation.pipeline.steps import steps_create

HTMX = {"HTTP_HX_REQUEST": "true"}
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8


def make_job(tenant, *, shots: int = 2, status: str = JobStatus.COMPLETED, approval: bool = False,
             label: str = "Alpha") -> Job:
    """A job with its style, script, storyboard, frames and (when completed) its video and thumbnail,
    made directly: the pipeline itself is tested in test_pipeline.py."""
    project = tenant.project(f"{label} project {shots} {status}")
    with tenant_scope(tenant.organization):
        job = Job.objects.create(
            organization=tenant.organization, project=project, topic=f"{label} paper boats on a canal",
            options={"duration_s": 4 * shots, "aspect_ratio": "16:9", "resolution": "480p", "shots": shots,
                     "voice": "", "fps": 24},
            status=status, progress=1.0 if status == JobStatus.COMPLETED else 0.4,
            progress_message="Generating clip 1 of 2", created_by=tenant.owner,
            template_snapshot={"name": "Review first", "version": 1,
                               "settings": {"approval_required": True}} if approval else {})
        steps_create(job)

        def artifact(kind, name, content=b"", data=None):
            made = Artifact(organization=tenant.organization, digest=f"{job.pk}-{name}".ljust(64, "0")[:64],
                            kind=kind, content_hash=name, data=data)
            if content:
                made.file.save(name, ContentFile(content), save=False)
            made.save()
            return made

        style = artifact("json", "style", data={"name": "cinematic", "mood": "calm", "tags": ["x"],
                                                "visual_description": "v", "palette": ["#000000"] * 3})
        script = artifact("json", "script", data={
            "title": f"{label} boats", "synopsis": "Boats drift at dusk.",
            "scenes": [{"description": "A canal", "narration": "Quiet water.", "duration_s": 4,
                        "visual_notes": "", "audio_notes": ""}]})
        storyboard = artifact("json", "storyboard", data={"shots": [
            {"number": n, "description": f"{label} shot {n} description", "dialogue": f"line {n}",
             "camera_movement": "zoom_in", "shot_type": "wide", "duration_s": 4, "composition": "",
             "lighting": ""} for n in range(1, shots + 1)]})
        for stage, made in ((Stage.STYLE, style), (Stage.SCRIPT, script), (Stage.STORYBOARD, storyboard)):
            job.steps.filter(stage=stage).update(status=StepStatus.SUCCEEDED, artifact=made, provider="offline",
                                                 total_ms=1200)
        for number in range(1, shots + 1):
            frame = artifact("image", f"frame{number}.png", b"\x89PNG frame %d" % number)
            job.steps.filter(stage=Stage.FRAME, shot=number).update(status=StepStatus.SUCCEEDED, artifact=frame,
                                                                    provider="offline", total_ms=800)
        if status in (JobStatus.COMPLETED, JobStatus.AWAITING_APPROVAL):
            # Composed (and, when completed, protected and registered): the video is the job's v1.
            stages = [s.value for s in Stage] if status == JobStatus.COMPLETED else [
                s.value for s in Stage if s not in (Stage.PROTECT, Stage.REGISTER)]
            job.steps.filter(stage__in=stages).update(status=StepStatus.SUCCEEDED)
            thumbnail = artifact("image", "thumb.jpg", b"\xff\xd8 jpeg")
            video = artifact("video", "video.mp4", VIDEO, data={
                "thumbnail_artifact": str(thumbnail.pk), "metadata": {"width": 854, "height": 480, "duration_s": 8.0}})
            job.steps.filter(stage=Stage.COMPOSE).update(artifact=video)
            JobVersion.objects.create(organization=tenant.organization, job=job, number=1, artifact=video)
        if status == JobStatus.COMPLETED:
            job.output = {"video_artifact": str(video.pk), "thumbnail_artifact": str(thumbnail.pk),
                          "metadata": {"width": 854, "height": 480, "duration_s": 8.0}}
            job.save(update_fields=["output"])
    return job


def signed_in(client, user):
    client.force_login(user)
    return client


def reload(tenant, job) -> Job:
    with tenant_scope(tenant.organization):
        return Job.objects.get(pk=job.pk)


def body(response) -> str:
    return response.content.decode()


# --- render ----------------------------------------------------------------------------------------


def test_job_page_shows_progress_script_storyboard_video_cost_and_rights(client, tenant_a):
    job = make_job(tenant_a, shots=2)
    signed_in(client, tenant_a.member("producer"))
    response = client.get(f"/jobs/{job.pk}/")
    assert response.status_code == 200
    page = body(response)
    for marker in ('id="job-progress"', 'aria-valuenow="100"', 'id="job-status"', 'data-status="completed"',
                   'id="shot-1"', 'id="shot-2"', 'id="shot-1-edit"', 'id="shot-2-regenerate"', 'id="job-video"',
                   'id="job-thumbnail"', 'id="rights-panel"', 'id="job-steps"', 'id="job-estimated-cost"',
                   f'data-ws-path="/ws/jobs/{job.pk}"', "js/job.js", "css/job.css", "Alpha boats",
                   "Alpha shot 2 description", f"/jobs/{job.pk}/shots/1/frame?v=", f"/jobs/{job.pk}/video?v="):
        assert marker in page, marker
    # A finished job has nothing to cancel, retry or approve, and no poller left running.
    assert 'id="job-cancel"' not in page and 'id="job-retry"' not in page and 'id="job-approve"' not in page
    assert 'hx-trigger="every 3s' not in page


def test_one_shot_is_singular_and_money_has_two_decimals(client, tenant_a):
    job = make_job(tenant_a, shots=1)
    signed_in(client, tenant_a.member("viewer"))
    page = body(client.get(f"/jobs/{job.pk}/"))
    assert "4 s, 1 shot<" in page and "1 shots" not in page
    # Written like the money of the job list and the budgets (budgets.money), not 0.0000.
    assert 'id="job-estimated-cost">0.00<' in page and 'id="job-cost">0.00<' in page and "0.0000" not in page
    assert "8 s, 2 shots<" in body(client.get(f"/jobs/{make_job(tenant_a, shots=2, label='Beta').pk}/"))


def test_running_job_page_polls_without_a_websocket_and_offers_cancel(client, tenant_a):
    job = make_job(tenant_a, status=JobStatus.VIDEO_GENERATION)
    with tenant_scope(tenant_a.organization):
        events = [job_event(job, "status", {"status": status}) for status in ("pending", "video_generation")]
    signed_in(client, tenant_a.member("producer"))
    page = body(client.get(f"/jobs/{job.pk}/"))
    # The socket resumes after the last event the page shows, so old events never replay over it.
    assert f'data-last-event="{events[-1].pk}"' in page
    # job.js cancels these polls while its socket is live (no trigger filter: the CSP refuses eval).
    assert 'hx-trigger="every 3s"' in page and f'hx-get="/jobs/{job.pk}/panel"' in page
    assert 'id="job-cancel"' in page and 'id="job-video"' not in page and 'id="job-video-empty"' in page
    assert 'aria-valuenow="40"' in page


def test_panel_answers_every_live_fragment_out_of_band(client, tenant_a):
    job = make_job(tenant_a, status=JobStatus.VIDEO_GENERATION)
    signed_in(client, tenant_a.member("viewer"))
    response = client.get(f"/jobs/{job.pk}/panel", **HTMX)
    assert response.status_code == 200
    page = body(response)
    for fragment in ("job-alerts", "job-state", "job-output", "job-review", "job-rights", "job-script", "storyboard",
                     "job-timeline", "job-poll"):
        assert f'id="{fragment}"' in page, fragment
    assert page.count('hx-swap-oob="true"') == 9
    assert "<html" not in page


def test_anonymous_visitor_is_sent_to_sign_in(client, tenant_a):
    job = make_job(tenant_a)
    response = client.get(f"/jobs/{job.pk}/")
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- actions -----------------------------------------------------------------------------------------


def test_cancel_then_retry_through_htmx_and_plain_posts(client, tenant_a):
    job = make_job(tenant_a, status=JobStatus.VIDEO_GENERATION)
    signed_in(client, tenant_a.member("producer"))
    response = client.post(f"/jobs/{job.pk}/cancel", **HTMX)
    assert response.status_code == 200 and reload(tenant_a, job).status == JobStatus.CANCELLED
    page = body(response)
    assert 'data-status="cancelled"' in page and 'id="job-retry"' in page and "The job was cancelled." in page
    assert 'id="shot-1-edit"' not in page  # a cancelled job's shots can't be edited (services._editable)
    assert 'hx-trigger="every 3s' not in page  # a finished job's poller stops

    response = client.post(f"/jobs/{job.pk}/retry", **HTMX)
    assert response.status_code == 200 and reload(tenant_a, job).status == JobStatus.RETRYING
    assert 'hx-trigger="every 3s' in body(response) and 'id="job-cancel"' in body(response)  # and polls again
    client.post(f"/jobs/{job.pk}/cancel", **HTMX)
    response = client.post(f"/jobs/{job.pk}/retry")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"


def test_refused_action_becomes_a_message_not_an_error_page(client, tenant_a):
    job = make_job(tenant_a)  # completed: nothing to cancel
    signed_in(client, tenant_a.member("producer"))
    response = client.post(f"/jobs/{job.pk}/cancel", **HTMX)
    assert response.status_code == 200 and "The job is already completed." in body(response)
    response = client.post(f"/jobs/{job.pk}/cancel", follow=True)
    assert response.status_code == 200 and "The job is already completed." in body(response)
    assert reload(tenant_a, job).status == JobStatus.COMPLETED


def test_reviewer_approves_a_job_waiting_for_approval(client, tenant_a):
    job = make_job(tenant_a, status=JobStatus.AWAITING_APPROVAL, approval=True)
    signed_in(client, tenant_a.member("reviewer"))
    page = body(client.get(f"/jobs/{job.pk}/"))
    assert 'id="job-approve"' in page
    # A reviewer approves but does not produce: no cancel, edit or regenerate.
    assert 'id="job-cancel"' not in page and 'id="shot-1-edit"' not in page and 'id="shot-1-regenerate"' not in page
    response = client.post(f"/jobs/{job.pk}/approve", **HTMX)
    assert response.status_code == 200 and reload(tenant_a, job).approved_at is not None
    assert 'id="job-approve"' not in body(response)
    assert client.post(f"/jobs/{job.pk}/cancel").status_code == 403


def test_producer_without_job_approve_cannot_approve(client, tenant_a):
    job = make_job(tenant_a, status=JobStatus.AWAITING_APPROVAL, approval=True)
    signed_in(client, tenant_a.member("producer"))
    assert 'id="job-approve"' not in body(client.get(f"/jobs/{job.pk}/"))
    assert client.post(f"/jobs/{job.pk}/approve").status_code == 403
    assert reload(tenant_a, job).approved_at is None


def test_edit_a_shot_inline_errors_on_the_form_then_the_card_comes_back(client, tenant_a):
    job = make_job(tenant_a, shots=3)
    signed_in(client, tenant_a.member("producer"))
    form = body(client.get(f"/jobs/{job.pk}/shots/2/edit", **HTMX))
    for field in ("shot-2-description", "shot-2-dialogue", "shot-2-camera_movement", "shot-2-duration_s",
                  "shot-2-save", "shot-2-cancel"):
        assert f'id="{field}"' in form, field
    assert 'class="shot-card shot-form"' in form and "<html" not in form
    assert form.count("autofocus") == 1  # htmx moves the focus into the form

    values = {"description": "A red boat turns", "dialogue": "line 2", "camera_movement": "pan_left",
              "duration_s": "4"}
    refused = client.post(f"/jobs/{job.pk}/shots/2/edit", {**values, "duration_s": "500"}, **HTMX)
    assert refused.status_code == 200 and 'id="shot-2-duration_s-errors"' in body(refused)
    assert reload(tenant_a, job).shot_edits == {}
    unchanged = client.post(f"/jobs/{job.pk}/shots/2/edit", {**values, "description": "Alpha shot 2 description",
                                                             "camera_movement": "zoom_in"}, **HTMX)
    assert "nothing to change" in body(unchanged)

    saved = client.post(f"/jobs/{job.pk}/shots/2/edit", values, **HTMX)
    assert saved.status_code == 200
    page = body(saved)
    assert page.lstrip().startswith('<article class="shot-card" id="shot-2"') and "A red boat turns" in page
    assert 'id="shot-2-edited"' in page and 'id="storyboard"' not in page  # other cards keep their state
    job = reload(tenant_a, job)
    # Only what changed is an edit, as through the API's PATCH.
    assert job.shot_edits == {"2": {"description": "A red boat turns", "camera_movement": "pan_left"}}
    assert job.status == JobStatus.IMAGE_GENERATION

    card = client.get(f"/jobs/{job.pk}/shots/2/", **HTMX)
    assert card.status_code == 200 and body(card).lstrip().startswith('<article class="shot-card" id="shot-2"')
    assert "autofocus" in body(card)  # and back to the card's Edit button


def test_edit_without_javascript_is_a_page_and_a_redirect(client, tenant_a):
    job = make_job(tenant_a)
    signed_in(client, tenant_a.member("producer"))
    page = client.get(f"/jobs/{job.pk}/shots/1/edit")
    assert page.status_code == 200 and "<html" in body(page) and 'id="shot-1-description"' in body(page)
    response = client.post(f"/jobs/{job.pk}/shots/1/edit", {"description": "Plain form", "dialogue": "",
                                                             "camera_movement": "static", "duration_s": "3"})
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/#shot-1"
    assert client.get(f"/jobs/{job.pk}/shots/9/edit").status_code == 404


def test_regenerate_one_shot(client, tenant_a):
    job = make_job(tenant_a, shots=3)
    signed_in(client, tenant_a.member("producer"))
    response = client.post(f"/jobs/{job.pk}/shots/3/regenerate", **HTMX)
    assert response.status_code == 200 and "Shot 3 is being regenerated." in body(response)
    with tenant_scope(tenant_a.organization):
        regenerated = set(Step.objects.filter(job=job, regeneration__gt=0).values_list("stage", "shot", "regeneration"))
    assert regenerated == {(Stage.FRAME, 3, 1), (Stage.CLIP, 3, 1)}
    response = client.post(f"/jobs/{job.pk}/shots/3/regenerate")
    assert response.status_code == 302 and response["Location"].endswith("#shot-3")


# --- roles -------------------------------------------------------------------------------------------


def test_viewer_sees_no_action_buttons_and_forged_posts_are_403(client, tenant_a):
    job = make_job(tenant_a, status=JobStatus.AWAITING_APPROVAL, approval=True)
    signed_in(client, tenant_a.member("viewer"))
    page = body(client.get(f"/jobs/{job.pk}/"))
    assert 'id="job-status"' in page and 'id="shot-1"' in page
    for button in ("job-cancel", "job-retry", "job-approve", "shot-1-edit", "shot-1-regenerate"):
        assert f'id="{button}"' not in page, button
    for url in ("cancel", "retry", "approve", "shots/1/regenerate", "shots/1/edit"):
        assert client.post(f"/jobs/{job.pk}/{url}", {"description": "forged"}).status_code == 403, url
        assert client.post(f"/jobs/{job.pk}/{url}", {"description": "forged"}, **HTMX).status_code == 403, url
    assert client.get(f"/jobs/{job.pk}/shots/1/edit").status_code == 403
    job = reload(tenant_a, job)
    assert job.status == JobStatus.AWAITING_APPROVAL and job.approved_at is None and job.shot_edits == {}


# --- files -------------------------------------------------------------------------------------------


def test_video_serves_ranges_so_the_player_can_seek_and_frames_and_thumbnail(client, tenant_a):
    job = make_job(tenant_a)
    signed_in(client, tenant_a.member("viewer"))
    whole = client.get(f"/jobs/{job.pk}/video")
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes" and whole["Content-Type"] == "video/mp4"
    assert b"".join(whole.streaming_content) == VIDEO
    part = client.get(f"/jobs/{job.pk}/video", HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 100-199/{len(VIDEO)}"
    assert b"".join(part.streaming_content) == VIDEO[100:200]
    assert client.get(f"/jobs/{job.pk}/video", HTTP_RANGE=f"bytes={len(VIDEO)}-").status_code == 416
    thumbnail = client.get(f"/jobs/{job.pk}/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"
    frame = client.get(f"/jobs/{job.pk}/shots/2/frame")
    assert frame.status_code == 200 and b"".join(frame.streaming_content) == b"\x89PNG frame 2"
    assert client.get(f"/jobs/{job.pk}/shots/7/frame").status_code == 404


def compose_video(tenant, job, content: bytes, name: str) -> Artifact:
    """The compose (and review) steps succeed with a video: the state of a job awaiting approval."""
    with tenant_scope(tenant.organization):
        video = Artifact(organization=tenant.organization, digest=f"{job.pk}-{name}".ljust(64, "0")[:64],
                         kind="video", content_hash=name, data={"metadata": {"width": 854, "height": 480}})
        video.file.save(name, ContentFile(content), save=False)
        video.save()
        job.steps.exclude(stage__in=[Stage.COMPOSE, Stage.PROTECT, Stage.REGISTER]).update(
            status=StepStatus.SUCCEEDED)
        job.steps.filter(stage=Stage.COMPOSE).update(status=StepStatus.SUCCEEDED, artifact=video)
        job.steps.filter(stage=Stage.REVIEW).update(status=StepStatus.SUCCEEDED)
    return video


def test_job_awaiting_approval_plays_the_composed_video_of_its_current_run(client, tenant_a):
    job = make_job(tenant_a, status=JobStatus.AWAITING_APPROVAL, approval=True)
    first = compose_video(tenant_a, job, VIDEO, "first.mp4")
    signed_in(client, tenant_a.member("reviewer"))
    page = body(client.get(f"/jobs/{job.pk}/"))
    # The reviewer sees what they are approving: job.output is only written on completion.
    assert '<video id="job-video"' in page and f"/jobs/{job.pk}/video?v={first.pk}" in page
    assert 'id="job-video-empty"' not in page and "854×480" in page
    served = client.get(f"/jobs/{job.pk}/video")
    assert served.status_code == 200 and b"".join(served.streaming_content) == VIDEO

    # A shot edit recomposes: while it runs there is no current video, then the new one is served.
    signed_in(client, tenant_a.member("producer"))
    edited = client.post(f"/jobs/{job.pk}/shots/1/edit", {"description": "A new first shot", "dialogue": "",
                                                           "camera_movement": "static", "duration_s": "4"})
    assert edited.status_code == 302
    assert client.get(f"/jobs/{job.pk}/video").status_code == 404
    second_bytes = VIDEO[::-1]
    second = compose_video(tenant_a, job, second_bytes, "second.mp4")
    page = body(client.get(f"/jobs/{job.pk}/"))
    assert f"/jobs/{job.pk}/video?v={second.pk}" in page and f"?v={first.pk}" not in page
    assert b"".join(client.get(f"/jobs/{job.pk}/video").streaming_content) == second_bytes


def test_running_job_has_no_video_yet(client, tenant_a):
    job = make_job(tenant_a, status=JobStatus.COMPOSING)
    signed_in(client, tenant_a.member("viewer"))
    assert client.get(f"/jobs/{job.pk}/video").status_code == 404
    assert client.get(f"/jobs/{job.pk}/thumbnail").status_code == 404


# --- tenancy -----------------------------------------------------------------------------------------


def test_another_studio_gets_404_on_every_job_url_and_sees_nothing(client, tenant_a, tenant_b):
    job = make_job(tenant_a, status=JobStatus.AWAITING_APPROVAL, approval=True)
    make_job(tenant_b, label="Bravo")
    signed_in(client, tenant_b.owner)
    gets = ["", "panel", "video", "thumbnail", "shots/1/", "shots/1/edit", "shots/1/frame"]
    posts = ["cancel", "retry", "approve", "shots/1/regenerate", "shots/1/edit"]
    for method, urls in (("get", gets), ("post", posts)):
        for url in urls:
            for headers in ({}, HTMX):
                response = getattr(client, method)(f"/jobs/{job.pk}/{url}", **headers)
                assert response.status_code == 404, (method, url, response.status_code)
                assert "Alpha" not in body(response) and str(job.pk) not in body(response)
    job = reload(tenant_a, job)
    assert job.status == JobStatus.AWAITING_APPROVAL and job.approved_at is None


# --- query counts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["", "panel"])
def test_query_count_does_not_grow_with_shots_and_steps(client, tenant_a, url):
    small, large = make_job(tenant_a, shots=2), make_job(tenant_a, shots=12)
    signed_in(client, tenant_a.member("producer"))
    counts = []
    for job in (small, large):
        client.get(f"/jobs/{job.pk}/{url}")  # warm the session and the caches alike
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"/jobs/{job.pk}/{url}", **(HTMX if url else {}))
        assert response.status_code == 200 and body(response).count('class="shot-card"') == (
            2 if job is small else 12)
        counts.append(len(captured))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 16, counts  # the review fragment adds its versions, reviewers, comments and share links
