"""Review and delivery, through the API with real renders (the offline providers): versions, frame comments,
request changes, approval by all assigned reviewers, restore without a re-render; share links with a
passphrase, their log, expiry and revocation; a leaked copy traced to its link (issue 14)."""
from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.audit import Actor
from config.media import ffmpeg_exe
from config.tenancy import tenant_scope
from generation import review
from generation.models import Comment, JobVersion, ShareAccess, ShareCopy, ShareLink, Step
from generation.queue.worker import registrations_anchor
from generation.tests.test_pipeline import SMALL, drain, reload, start
from projects.templates import template_create

FPS = 24


def _template(tenant, rule: str):
    with tenant_scope(tenant.organization):
        return template_create(organization=tenant.organization, name=f"Approval {rule}", description="",
                               settings={**SMALL, "approval_required": True, "approval_rule": rule},
                               actor=Actor(user=tenant.owner))


def _runs(tenant, job) -> dict:
    with tenant_scope(tenant.organization):
        return {(s.stage, s.shot): s.runs for s in Step.objects.filter(job=job)}


@pytest.fixture
def reviewed(tenant_a, run_commits, mailoutbox):
    """A job whose template asks every assigned reviewer to approve, rendered to v1, two reviewers assigned."""
    job = start(tenant_a, run_commits, template_id=_template(tenant_a, "all").pk)
    drain(run_commits)
    first, second = tenant_a.member("reviewer"), tenant_a.member("reviewer")
    owner = tenant_a.client("owner")
    response = run_commits(lambda: owner.put(f"/api/v1/jobs/{job.pk}/review",
                                             {"reviewers": [first.email, second.email]}, format="json"))
    assert response.status_code == 200, response.json()
    return job, owner, tenant_a.client(user=first), tenant_a.client(user=second)


def test_comment_request_changes_edit_v2_and_approval_by_all_reviewers(tenant_a, run_commits, reviewed, mailoutbox):
    job, owner, first, second = reviewed
    assert reload(tenant_a, job).status == "awaiting_approval"
    versions = owner.get(f"/api/v1/jobs/{job.pk}/versions").json()
    assert [v["number"] for v in versions] == [1] and versions[0]["current"]
    # The reviewers were told a version awaits them, in the portal and by email.
    assert {m.to[0] for m in mailoutbox} == {first.user.email, second.user.email}

    # Shot 3 at 0:07, a drawn box, and an @mention of the producer.
    comment = first.post(f"/api/v1/jobs/{job.pk}/comments", {
        "body": f"@{tenant_a.owner.email} the lamp is too small here", "time_s": 7.0, "shot": 3,
        "region": {"type": "rect", "x": 0.4, "y": 0.3, "w": 0.2, "h": 0.25}}, format="json")
    assert comment.status_code == 201, comment.json()
    comment = comment.json()
    assert (comment["frame"], comment["time_s"], comment["shot"], comment["version"]) == (7 * FPS, 7.0, 3, 1)
    assert comment["region"] == {"type": "rect", "x": 0.4, "y": 0.3, "w": 0.2, "h": 0.25}
    assert comment["mentions"] == [tenant_a.owner.email]
    reply = second.post(f"/api/v1/jobs/{job.pk}/comments", {"body": "Agreed", "parent": comment["id"]}, format="json")
    assert reply.status_code == 201 and reply.json()["parent"] == comment["id"]
    # Bad input is refused with the field named.
    bad = first.post(f"/api/v1/jobs/{job.pk}/comments", {"body": "x", "frame": 10_000}, format="json")
    assert bad.status_code == 400 and "frame" in bad.json()["error"]["fields"]
    bad = first.post(f"/api/v1/jobs/{job.pk}/comments", {"body": "x", "region": {"type": "rect", "x": 0.9, "y": 0,
                                                                                   "w": 0.5, "h": 0.5}}, format="json")
    assert bad.status_code == 400 and "region" in bad.json()["error"]["fields"]
    # A viewer may read but not comment.
    viewer = tenant_a.client("viewer")
    assert viewer.post(f"/api/v1/jobs/{job.pk}/comments", {"body": "hi"}, format="json").status_code == 403

    changes = run_commits(lambda: first.post(f"/api/v1/jobs/{job.pk}/request-changes",
                                             {"version": 1, "note": "See my comment on shot 3"}, format="json"))
    assert changes.status_code == 200, changes.json()
    assert reload(tenant_a, job).status == "changes_requested"
    # The producer sees the open comment against shot 3.
    open_ones = [c for c in owner.get(f"/api/v1/jobs/{job.pk}/comments?version=1").json()
                 if not c["resolved"] and c["parent"] is None]
    assert [(c["shot"], c["frame"]) for c in open_ones] == [(3, 168)]

    before = _runs(tenant_a, job)
    edited = run_commits(lambda: owner.patch(f"/api/v1/jobs/{job.pk}/shots/3",
                                             {"description": "A close-up of the great lamp, filling the frame"},
                                             format="json"))
    assert edited.status_code == 200, edited.json()
    drain(run_commits)
    after = _runs(tenant_a, job)
    assert after[("frame", 3)] == before[("frame", 3)] + 1 and after[("frame", 1)] == before[("frame", 1)]
    assert reload(tenant_a, job).status == "awaiting_approval"
    versions = owner.get(f"/api/v1/jobs/{job.pk}/versions").json()
    assert [v["number"] for v in versions] == [2, 1]
    assert versions[0]["changes"][0]["shot"] == 3 and versions[0]["changes"][0]["change"] == "edited"
    assert versions[0]["changes"][0]["by"] == tenant_a.owner.email
    resolved = owner.post(f"/api/v1/jobs/{job.pk}/comments/{comment['id']}/resolve")
    assert resolved.status_code == 200 and resolved.json()["resolved"]

    # v1 is no longer the one to decide on; one approval of v2 is not enough under "all".
    stale = first.post(f"/api/v1/jobs/{job.pk}/approve", {"version": 1}, format="json")
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "version_not_current"
    assert run_commits(lambda: first.post(f"/api/v1/jobs/{job.pk}/approve", {"version": 2},
                                          format="json")).status_code == 200
    drain(run_commits)
    state = owner.get(f"/api/v1/jobs/{job.pk}/review").json()
    assert reload(tenant_a, job).status == "awaiting_approval"
    assert state["waiting_for"] == [second.user.email] and not state["approved"]
    outsider = tenant_a.client("reviewer")  # may approve, but is not assigned
    assert outsider.post(f"/api/v1/jobs/{job.pk}/approve").json()["error"]["code"] == "not_a_reviewer"
    assert run_commits(lambda: second.post(f"/api/v1/jobs/{job.pk}/approve", {"version": 2},
                                           format="json")).status_code == 200
    drain(run_commits)
    assert reload(tenant_a, job).status == "completed"
    versions = owner.get(f"/api/v1/jobs/{job.pk}/versions").json()
    assert versions[0]["content_id"] and versions[1]["content_id"] is None  # v2 was protected; v1 never was
    assert {a["reviewer"] for a in versions[0]["approval"]["approved_by"]} == {first.user.email, second.user.email}
    download = owner.get(versions[0]["video_url"] + "?download=1")
    assert download.status_code == 200
    assert f'filename="{job.topic} v2.mp4"' in download["Content-Disposition"]
    # The producer was told of the comment, the request for changes and the approvals.
    kinds = [n["kind"] for n in owner.get("/api/v1/notifications").json()]
    assert "comment.mention" in kinds and kinds.count("review.outcome") == 3

    # Restoring v1 is a new version with v1's files: nothing renders again.
    before = _runs(tenant_a, job)
    restored = run_commits(lambda: owner.post(f"/api/v1/jobs/{job.pk}/versions/1/restore"))
    assert restored.status_code == 200, restored.json()
    drain(run_commits)
    with tenant_scope(tenant_a.organization):
        v1, v3 = JobVersion.objects.get(job=job, number=1), JobVersion.objects.get(job=job, number=3)
    assert v3.restored_from == 1 and v3.artifact_id == v1.artifact_id
    assert {k: v for k, v in _runs(tenant_a, job).items() if k[0] in ("frame", "clip", "compose")} == \
        {k: v for k, v in before.items() if k[0] in ("frame", "clip", "compose")}


def _guest(ip: str = "203.0.113.9") -> Client:
    """A browser without an account (Django's test client posts forms as a browser does)."""
    return Client(HTTP_USER_AGENT="ClientBrowser/1.0", REMOTE_ADDR=ip)


def _reencode(src: Path, dst: Path) -> Path:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-vf", "scale=640:-2",
                    "-c:v", "libx264", "-crf", "28", "-c:a", "aac", str(dst)], check=True, timeout=120)
    return dst


def test_share_link_passphrase_log_expiry_and_a_leak_traced_to_its_link(tenant_a, tenant_b, run_commits, tmp_path,
                                                                       settings):
    settings.SHARE_PASSPHRASE_CHECK_RATE = "5/min"
    job = start(tenant_a, run_commits)
    drain(run_commits)
    registrations_anchor()  # confirmed on the (embedded) chain: the public answer names the owner
    owner = tenant_a.client("owner")
    created = owner.post(f"/api/v1/jobs/{job.pk}/share-links", {
        "recipient": "Acme Drinks (Jane)", "passphrase": "lighthouse-42", "expires_in_hours": 48,
        "allow_download": True}, format="json")
    assert created.status_code == 201, created.json()
    link = created.json()
    page = link["url"].split("testserver")[1]
    assert "passphrase" not in link or link["passphrase"] is True  # never the passphrase itself
    with tenant_scope(tenant_a.organization):
        stored = ShareLink.objects.get(pk=link["id"])
    assert stored.token_hash not in link["url"] and "lighthouse-42" not in stored.passphrase_hash

    guest = _guest()
    assert guest.get(page).status_code == 200 and b"passphrase" in guest.get(page).content.lower()
    assert guest.get(page + "video").status_code == 403  # nothing before the passphrase
    wrong = guest.post(page, {"passphrase": "wrong-guess"})
    assert wrong.status_code == 403
    opened = guest.post(page, {"passphrase": "lighthouse-42"})
    assert opened.status_code == 302
    shown = guest.get(page)
    assert shown.status_code == 200 and b'id="share-player"' in shown.content
    assert job.topic.encode() not in shown.content and str(job.project_id).encode() not in shown.content
    # The copy is made once, whatever the number of requests, and served with ranges.
    video = guest.get(page + "video", HTTP_RANGE="bytes=0-99")
    assert video.status_code == 206
    downloaded = b"".join(guest.get(page + "video?download=1").streaming_content)
    with tenant_scope(tenant_a.organization):
        copies = list(ShareCopy.objects.filter(link_id=link["id"]))
    assert len(copies) == 1 and copies[0].seconds > 0
    comment = guest.post(page + "comments", {"name": "Jane", "email": "jane@acme.test", "time_s": "2.5",
                                             "body": "Love the ending"})
    assert comment.status_code == 302
    studio_view = owner.get(f"/api/v1/jobs/{job.pk}/comments").json()
    assert [(c["author"], c["frame"], c["via_share_link"]) for c in studio_view] == [("Jane", 60, True)]

    # Wrong passphrases are throttled per link and address (every try counts), and only there.
    other = _guest("198.51.100.7")
    statuses = [other.post(page, {"passphrase": "nope-nope"}).status_code for _ in range(6)]
    assert statuses == [403] * 5 + [429], statuses
    assert other.post(page, {"passphrase": "lighthouse-42"}).status_code == 429  # even the right one, for now
    assert guest.get(page).status_code == 200  # the guest's own session is unaffected

    log = owner.get(f"/api/v1/share-links/{link['id']}/accesses").json()["results"]
    actions = [entry["action"] for entry in log]
    assert {"view", "download", "comment", "passphrase_failed"} <= set(actions)
    assert {entry["ip"] for entry in log} == {"203.0.113.9", "198.51.100.7"}
    assert all(entry["user_agent"] == "ClientBrowser/1.0" for entry in log)

    # The leaked download, re-encoded at CRF 28 and scaled to 640 px, names the link for its studio only.
    leaked = tmp_path / "leak.mp4"
    leaked.write_bytes(downloaded)
    suspect = _reencode(leaked, tmp_path / "suspect.mp4")
    with open(suspect, "rb") as handle:
        traced = owner.post("/api/v1/verify/trace", {"file": handle}, format="multipart")
    assert traced.status_code == 200, traced.content[:300]
    assert traced.json()["recipient"]["share_link"]["id"] == link["id"]
    assert traced.json()["recipient"]["recipient"] == "Acme Drinks (Jane)"
    assert traced.json()["owner"]["slug"] == tenant_a.slug  # and the public answer beside it
    with open(suspect, "rb") as handle:
        public = APIClient().post("/api/v1/verify", {"file": handle}, format="multipart")
    assert public.status_code == 200 and "recipient" not in public.json()
    assert public.json()["verdict"] == "registered" and public.json()["owner"]["slug"] == tenant_a.slug
    assert public.json()["later_registrations"] == []
    assert b"Acme" not in public.content and link["id"].encode() not in public.content
    with open(suspect, "rb") as handle:  # another studio learns nothing of A's recipients
        foreign = tenant_b.client("owner").post("/api/v1/verify/trace", {"file": handle}, format="multipart")
    assert foreign.status_code == 200 and foreign.json()["recipient"] is None

    # A second link's copy names the second link, never the first.
    second = owner.post(f"/api/v1/jobs/{job.pk}/share-links", {"recipient": "Festival jury", "allow_download": True},
                        format="json").json()
    second_page = second["url"].split("testserver")[1]
    second_copy = tmp_path / "second.mp4"
    second_copy.write_bytes(b"".join(_guest().get(second_page + "video?download=1").streaming_content))
    with open(_reencode(second_copy, tmp_path / "second-suspect.mp4"), "rb") as handle:
        traced = owner.post("/api/v1/verify/trace", {"file": handle}, format="multipart").json()
    assert traced["recipient"]["share_link"]["id"] == second["id"]

    # Revoked, or past its expiry, the link answers 410.
    assert owner.post(f"/api/v1/share-links/{second['id']}/revoke").json()["state"] == "revoked"
    assert _guest().get(second_page).status_code == 410
    with tenant_scope(tenant_a.organization):
        ShareLink.objects.filter(pk=link["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert guest.get(page).status_code == 410 and guest.get(page + "video").status_code == 410
    assert APIClient().get("/s/not-a-token/").status_code == 404


def test_review_reads_take_constant_queries(tenant_a, run_commits):
    job = start(tenant_a, run_commits, options={"duration_s": 5, "resolution": "480p", "shots": 1})
    drain(run_commits)
    owner = tenant_a.client("owner")
    link = owner.post(f"/api/v1/jobs/{job.pk}/share-links", {"recipient": "Client"}, format="json").json()
    urls = [f"/api/v1/jobs/{job.pk}/comments", f"/api/v1/jobs/{job.pk}/versions",
            f"/api/v1/share-links/{link['id']}/accesses"]

    def counts() -> list[int]:
        found = []
        for url in urls:
            with CaptureQueriesContext(connection) as queries:
                assert owner.get(url).status_code == 200
            found.append(len(queries))
        return found

    owner.post(f"/api/v1/jobs/{job.pk}/comments", {"body": "one", "frame": 1}, format="json")
    with tenant_scope(tenant_a.organization):
        ShareAccess.objects.create(organization=tenant_a.organization, link_id=link["id"], action="view")
    few = counts()
    with tenant_scope(tenant_a.organization):
        version = JobVersion.objects.get(job=job)
        stored = ShareLink.objects.get(pk=link["id"])
        for number in range(2, 12):
            JobVersion.objects.create(organization=tenant_a.organization, job=job, number=number,
                                      artifact=version.artifact)
        for index in range(30):
            Comment.objects.create(organization=tenant_a.organization, job=job, version=version, body=f"c{index}",
                                   frame=index, author=tenant_a.owner, author_name=tenant_a.owner.email)
            ShareAccess.objects.create(organization=tenant_a.organization, link=stored, action="view")
    many = counts()
    assert many == few, (few, many)
    with tenant_scope(tenant_a.organization):
        assert len(review.comments_of(reload(tenant_a, job))) == 31
