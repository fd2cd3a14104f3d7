"""Issue 14 in a real browser (headless Chromium): review and delivery.

1. A reviewer comments at 0:07 on shot 3 with a box drawn on the picture and requests changes; the producer
   sees the comment on shot 3, edits the shot; v2 renders; the reviewer compares v1 and v2 side by side
   (the two players in sync) and approves v2; the template asks every assigned reviewer, so the job
   completes only once the second reviewer approves too.
2. A share link with a passphrase, opened in a fresh browser context: a wrong passphrase is refused and then
   throttled, the right one plays the video, the client comments and downloads; the studio sees the view,
   the download and the comment in the link's log; after its expiry the link answers 410.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.audit import Actor
from accounts.tests.browser.conftest import screenshot, sign_in, with_password
from accounts.tests.browser.test_studio_flow import RUN_S, job_status_is, make_template
from config.tenancy import tenant_scope
from generation import review, services
from generation.models import Comment, ShareLink

pytestmark = pytest.mark.browser

THREE_SHOTS = {"duration_s": 9, "resolution": "480p", "shots": 3, "aspect_ratio": "16:9"}


def _start(tenant, producer, template=None, topic="A lighthouse keeper polishes the great lamp at dusk"):
    project = tenant.project("Review project")
    with tenant_scope(tenant.organization):
        job, _ = services.job_create(organization=tenant.organization, actor=Actor(user=producer),
                                     project_id=project.pk, topic=topic, options=dict(THREE_SHOTS),
                                     template_id=template.pk if template else None)
    return job


def test_comment_request_changes_v2_compare_and_approval_by_all_reviewers(new_context, tenant_a):
    producer = with_password(tenant_a.member("producer"))
    first, second = with_password(tenant_a.member("reviewer")), with_password(tenant_a.member("reviewer"))
    template = make_template(tenant_a, "Every reviewer approves", **THREE_SHOTS, approval_required=True,
                             approval_rule="all")
    job = _start(tenant_a, producer, template)
    with tenant_scope(tenant_a.organization):
        review.reviewers_set(job=job, emails=[first.email, second.email], actor=Actor(user=producer))
    job_url = f"/jobs/{job.pk}/"

    reviewer = new_context().new_page()
    sign_in(reviewer, first)
    reviewer.goto(job_url)
    job_status_is(reviewer, "awaiting_approval")
    reviewer.wait_for_selector("#job-video")
    # Pause at 0:07, take the player's time, pick shot 3, draw a box on the picture.
    reviewer.evaluate("() => { const v = document.getElementById('job-video'); v.currentTime = 7; v.pause(); }")
    reviewer.wait_for_function("() => Math.abs(document.getElementById('job-video').currentTime - 7) < 0.05")
    reviewer.click("#comment-use-time")
    assert abs(float(reviewer.input_value("#comment-form [name=time_s]")) - 7) < 0.05
    reviewer.fill("#comment-form [name=shot]", "3")
    reviewer.click("#comment-draw")
    reviewer.locator("#job-video").scroll_into_view_if_needed()
    video = reviewer.locator("#job-video").bounding_box()
    reviewer.mouse.move(video["x"] + video["width"] * 0.4, video["y"] + video["height"] * 0.3)
    reviewer.mouse.down()
    reviewer.mouse.move(video["x"] + video["width"] * 0.6, video["y"] + video["height"] * 0.55, steps=5)
    reviewer.mouse.up()
    assert '"type":"rect"' in reviewer.input_value("#comment-form [name=region]")
    reviewer.fill("#comment-form [name=body]", "Shot 3: the lamp is too small, fill the frame with it")
    screenshot(reviewer, "review-comment")
    with reviewer.expect_navigation():
        reviewer.click("#comment-submit")
    reviewer.wait_for_selector("#comment-list .comment")
    with tenant_scope(tenant_a.organization):
        comment = Comment.objects.select_related("version").get(job=job)  # read in the scope (row level security)
    assert (comment.frame, comment.shot, comment.version.number) == (168, 3, 1)
    assert comment.region["type"] == "rect" and 0.3 < comment.region["x"] < 0.5 and comment.region["w"] > 0.1
    reviewer.fill("#request-changes-note", "See my comment on shot 3")
    reviewer.click("#job-request-changes")
    job_status_is(reviewer, "changes_requested")

    # The producer sees the open comment on shot 3, edits the shot; v2 renders.
    page = new_context().new_page()
    sign_in(page, producer)
    page.goto(job_url)
    assert "the lamp is too small" in page.inner_text("#shot-3-comments")
    page.click("#shot-3-edit")
    page.wait_for_selector("form#shot-3")
    page.fill("#shot-3 textarea[name=description]", "A close-up of the great lamp, filling the frame")
    page.click("#shot-3-save")
    page.wait_for_selector("#shot-3-edited")
    page.wait_for_selector("#version-2", timeout=RUN_S)
    job_status_is(page, "awaiting_approval")
    assert "Shot 3" in page.inner_text("#version-2")

    # The reviewer compares v1 and v2 side by side, in sync, and approves v2.
    reviewer.reload()
    reviewer.wait_for_selector("#compare-open")
    reviewer.select_option("#compare-left", label="v1")
    reviewer.select_option("#compare-right", label="v2")
    reviewer.click("#compare-open")
    reviewer.wait_for_function("""() => ['compare-left-video', 'compare-right-video']
        .every((id) => document.getElementById(id).readyState >= 1)""")
    assert "/versions/1/video" in reviewer.get_attribute("#compare-left-video", "src")
    assert "/versions/2/video" in reviewer.get_attribute("#compare-right-video", "src")
    reviewer.evaluate("() => { document.getElementById('compare-left-video').currentTime = 4; }")
    reviewer.wait_for_function("() => Math.abs(document.getElementById('compare-right-video').currentTime - 4) < 0.2")
    screenshot(reviewer, "review-compare")
    reviewer.click("#job-approve")
    reviewer.wait_for_selector("#review-waiting")
    assert second.email in reviewer.inner_text("#review-waiting")
    job_status_is(reviewer, "awaiting_approval")

    # The second reviewer's approval completes the job.
    other = new_context().new_page()
    sign_in(other, second)
    other.goto(job_url)
    other.click("#job-approve")
    job_status_is(page, "completed")
    page.wait_for_selector("#version-2 .badge")
    approvers = page.inner_text("#review-state")
    assert first.email in approvers and second.email in approvers


def test_share_link_passphrase_comment_download_log_and_expiry(new_context, tenant_a, tmp_path, settings):
    settings.SHARE_PASSPHRASE_CHECK_RATE = "3/min"
    producer = with_password(tenant_a.member("producer"))
    job = _start(tenant_a, producer, topic="Paper boats drifting down a canal at dusk")
    studio = new_context().new_page()
    sign_in(studio, producer)
    studio.goto(f"/jobs/{job.pk}/")
    job_status_is(studio, "completed")
    # The studio creates the link in the portal; its URL is shown once.
    studio.fill("#share-form [name=recipient]", "Acme Drinks (Jane)")
    studio.fill("#share-form [name=passphrase]", "lighthouse-42")
    studio.fill("#share-form [name=expires_in_hours]", "24")
    studio.check("#share-form [name=allow_download]")
    with studio.expect_navigation():
        studio.click("#share-submit")
    url = studio.inner_text("#share-created-url").strip()
    assert "/s/" in url
    studio.reload()
    assert studio.locator("#share-created-url").count() == 0  # shown once, not on reload

    guest = new_context().new_page()
    guest.goto(url)
    guest.fill("#share-passphrase-form [name=passphrase]", "wrong-guess")
    guest.click("#share-passphrase-form button")
    assert "wrong" in guest.inner_text("#share-passphrase-form").lower()
    guest.fill("#share-passphrase-form [name=passphrase]", "lighthouse-42")
    guest.click("#share-passphrase-form button")
    guest.wait_for_selector("#share-player")
    assert job.topic not in guest.content()  # nothing else of the studio
    guest.wait_for_function("() => document.getElementById('share-player').readyState >= 2", timeout=60_000)
    guest.evaluate("() => document.getElementById('share-player').play()")
    guest.wait_for_function("() => document.getElementById('share-player').currentTime > 0.3")
    guest.fill("#share-comment-form [name=name]", "Jane")
    guest.fill("#share-comment-form [name=email]", "jane@acme.test")
    guest.fill("#share-comment-form [name=time_s]", "2.5")
    guest.fill("#share-comment-form [name=body]", "Love the ending")
    with guest.expect_navigation():
        guest.click("#share-comment-form button")
    assert "Love the ending" in guest.inner_text("#share-comment-list")
    with guest.expect_download() as download:
        guest.click("#share-download")
    saved = tmp_path / "download.mp4"
    download.value.save_as(saved)
    assert download.value.suggested_filename == f"{job.topic} v1.mp4" and saved.stat().st_size > 10_000
    screenshot(guest, "share-client")

    # Wrong passphrases from another browser are throttled.
    intruder = new_context().new_page()
    for _ in range(3):
        intruder.goto(url)
        intruder.fill("#share-passphrase-form [name=passphrase]", "guess-guess")
        intruder.click("#share-passphrase-form button")
    intruder.goto(url)
    intruder.fill("#share-passphrase-form [name=passphrase]", "lighthouse-42")
    intruder.click("#share-passphrase-form button")
    assert "too many" in intruder.inner_text("#share-passphrase-form").lower()

    # The studio sees the view, download and comment in the link's log, and the comment on the job.
    studio.goto(f"/jobs/{job.pk}/")
    assert "Love the ending" in studio.inner_text("#comment-list")
    studio.click("#share-links .share-log")
    actions = studio.eval_on_selector_all("#share-log .share-access", "rows => rows.map((r) => r.dataset.action)")
    assert {"view", "download", "comment", "passphrase_failed"} <= set(actions), actions
    screenshot(studio, "share-log")

    # Past its expiry the link answers 410.
    with tenant_scope(tenant_a.organization):
        ShareLink.objects.filter(job=job).update(expires_at=timezone.now() - timedelta(seconds=1))
    gone = guest.goto(url)
    assert gone.status == 410 and "no longer works" in guest.inner_text("#share-gone-title")
