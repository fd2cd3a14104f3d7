"""Must-show (issue 19): public ownership answers name only the rightful, registered owner.

- Two studios with the same topic and options get different animatics, and neither is held.
- A job that reproduces another studio's registered video is held: not downloadable, `approve` answers
  409 `rights_hold`, no public certificate, never named by verify; released, it is a later registration.
- An upload of another studio's registered video (re-encoded and scaled, cropped 5%, or its exact bytes) is
  held, not registered; verify names only the original owner; rejected, nothing of it is public. A 5% crop
  is not always recognised yet (issue 15): that case is an expected failure when no method sees it.
Both orders of events: the first studio's registration already confirmed, or still pending, when the
copy arrives.
"""
import subprocess

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.audit import Actor
from accounts.models import AuditEntry, User
from config.media import ffmpeg_exe
from config.tenancy import dangerously_unscoped, tenant_scope
from conftest import make_tenant
from generation import services
from generation.models import Job
from generation.queue.worker import registrations_anchor, run_until_idle
from rights.models import Content

TOPIC = "Lanterns drifting over a mountain lake"
OPTIONS = {"duration_s": 5, "resolution": "480p", "shots": 2}


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *map(str, args)], check=True,
                   timeout=120)


def verify(path) -> dict:
    with open(path, "rb") as handle:
        response = APIClient().post("/api/v1/verify", {"file": handle}, format="multipart")
    assert response.status_code == 200, response.content[:300]
    return response.json()


def named(body: dict) -> set:
    """Every organization the answer presents as an owner."""
    owners = {match["owner"]["slug"] for match in body["matches"]}
    if body["owner"]:
        owners.add(body["owner"]["slug"])
    return owners


def drain(capture):
    while True:
        with capture(execute=True):
            if not run_until_idle():
                break


def start_job(tenant, capture, *, template=None) -> Job:
    project = tenant.project("Lake")
    with tenant_scope(tenant.organization), capture(execute=True):
        job, _ = services.job_create(organization=tenant.organization, actor=Actor(user=tenant.owner),
                                     project_id=project.pk, topic=TOPIC, options=dict(OPTIONS),
                                     template_id=template.pk if template else None)
    return job


def job_body(tenant, job) -> dict:
    return tenant.client("viewer").get(f"/api/v1/jobs/{job.pk}").json()


def download(client, url, path):
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    path.write_bytes(b"".join(response.streaming_content))
    return path


def variants(video, tmp_path) -> dict:
    """The transformations the issue names: the file, a 2 s excerpt, a 5% crop, re-encoded and scaled, a frame."""
    out = {"as_is": video}
    out["excerpt"] = tmp_path / "excerpt.mp4"
    ffmpeg("-ss", "1", "-i", video, "-t", "2", "-c:v", "libx264", "-crf", "23", "-an", out["excerpt"])
    out["crop5"] = tmp_path / "crop5.mp4"
    ffmpeg("-i", video, "-vf", "crop=iw*0.95:ih*0.95,scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264",
           "-crf", "23", "-an", out["crop5"])
    out["reencoded_scaled"] = tmp_path / "scaled.mp4"
    ffmpeg("-i", video, "-vf", "scale=640:-2", "-c:v", "libx264", "-crf", "28", "-an", out["reencoded_scaled"])
    out["frame"] = tmp_path / "frame.png"
    ffmpeg("-ss", "2", "-i", video, "-frames:v", "1", out["frame"])
    return out


def certificate_status(content_id: str) -> tuple[int, int]:
    return (APIClient().get(f"/api/v1/certificates/{content_id}").status_code,
            APIClient().get(f"/certificates/{content_id}/").status_code)


@pytest.fixture
def operator_client(client, db):
    client.force_login(User.objects.create_superuser(email="ops@platform.test", password=None))
    return client


# --- independent studios --------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["a", "b"])
def test_same_topic_and_options_in_two_studios_give_their_own_animatics(
        tenant_a, tenant_b, tmp_path, django_capture_on_commit_callbacks, first):
    tenants = {"a": tenant_a, "b": tenant_b}
    one, two = tenants[first], tenants["b" if first == "a" else "a"]
    first_job = start_job(one, django_capture_on_commit_callbacks)
    drain(django_capture_on_commit_callbacks)
    registrations_anchor()
    second_job = start_job(two, django_capture_on_commit_callbacks)
    drain(django_capture_on_commit_callbacks)
    registrations_anchor()
    first_body, second_body = job_body(one, first_job), job_body(two, second_job)
    assert first_body["status"] == second_body["status"] == "completed", (first_body["error"], second_body["error"])
    assert not second_body["rights"]["hold"]  # not flagged as a copy: it is not one
    assert first_body["rights"]["sha256"] != second_body["rights"]["sha256"]
    with dangerously_unscoped():
        originals = set(Content.objects.values_list("original_sha256", flat=True))
    assert len(originals) == 2  # the composed animatics themselves differ, not only their watermarks

    video = download(one.client("viewer"), f"/api/v1/jobs/{first_job.pk}/video", tmp_path / "first.mp4")
    body = verify(video)
    assert named(body) == {one.slug} and body["original"]["content_id"] == first_body["rights"]["content_id"]
    assert body["later_registrations"] == []


# --- a job reproducing another studio's video ----------------------------------------------------


@pytest.mark.parametrize("first_confirmed", [True, False], ids=["first-confirmed", "first-pending"])
def test_a_job_copying_registered_content_is_held_until_released(
        tenant_a, tenant_b, tmp_path, django_capture_on_commit_callbacks, operator_client, first_confirmed):
    """B's job waits for its reviewer with its composed video; that video reaches A, who uploads and
    registers it first. When B approves, B's output matches A's registered content: held."""
    from projects.templates import template_create

    with tenant_scope(tenant_b.organization):
        template = template_create(organization=tenant_b.organization, name="Reviewed", description="",
                                   settings={"approval_required": True}, actor=Actor(user=tenant_b.owner))
    job = start_job(tenant_b, django_capture_on_commit_callbacks, template=template)
    drain(django_capture_on_commit_callbacks)
    b_reviewer = tenant_b.client("reviewer")
    assert job_body(tenant_b, job)["status"] == "awaiting_approval"
    composed = download(b_reviewer, f"/api/v1/jobs/{job.pk}/video", tmp_path / "composed.mp4")

    with open(composed, "rb") as handle:
        uploaded = tenant_a.client("producer").post("/api/v1/assets", {"file": handle}, format="multipart").json()
    assert uploaded["held"] is False and uploaded["infringements"] == []
    if first_confirmed:
        registrations_anchor()

    with django_capture_on_commit_callbacks(execute=True):
        assert b_reviewer.post(f"/api/v1/jobs/{job.pk}/approve").status_code == 200
    drain(django_capture_on_commit_callbacks)
    held = job_body(tenant_b, job)
    assert held["status"] == "awaiting_approval" and "Possible infringement" in held["progress_message"]
    assert held["rights"]["hold"]["matches"][0]["content_id"] == uploaded["content_id"]
    assert held["rights"]["registration"] is None and held["rights"]["certificate_url"] is None
    assert held["output"]["video_url"] is None
    # Not downloadable by anyone, by the API or the portal; approving answers the hold's code.
    for url in (f"/api/v1/jobs/{job.pk}/video", f"/api/v1/jobs/{job.pk}/thumbnail"):
        refused = tenant_b.client("owner").get(url)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "rights_hold", url
    portal = tenant_b.client("owner")
    assert portal.get(f"/jobs/{job.pk}/video").status_code == 409
    again = b_reviewer.post(f"/api/v1/jobs/{job.pk}/approve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "rights_hold"
    b_content_id = held["rights"]["content_id"]
    assert certificate_status(b_content_id) == (404, 404)

    registrations_anchor()
    a_file = tmp_path / "a.mp4"
    with dangerously_unscoped():
        a_file.write_bytes(Content.objects.get(content_id=uploaded["content_id"]).protected.read())
    for name, path in variants(a_file, tmp_path).items():
        body = verify(path)
        # A 5% crop may go unrecognised (issue 15); it must never name anyone else.
        assert body["verdict"] == "registered" or name == "crop5", (name, body)
        assert named(body) <= {tenant_a.slug}, (name, body)
        assert body["later_registrations"] == [], name
        assert b_content_id not in str(body), name

    # An operator releases the hold in the admin: B is registered, and a later registration of A's original.
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(reverse("admin:generation_job_changelist"),
                                        {"action": "release_rights_hold", "_selected_action": [job.pk]})
    assert response.status_code == 302
    drain(django_capture_on_commit_callbacks)
    registrations_anchor()
    assert job_body(tenant_b, job)["status"] == "completed"
    assert certificate_status(b_content_id) == (200, 200)
    for name, path in variants(a_file, tmp_path).items():
        body = verify(path)
        assert named(body) <= {tenant_a.slug}, name
        if body["verdict"] == "registered":
            assert body["original"]["content_id"] == uploaded["content_id"], name
        if name not in ("frame", "crop5"):  # a frame or a crop may not match the copy; never as owner
            later = {entry["content_id"]: entry for entry in body["later_registrations"]}
            assert later[b_content_id]["relation"] == "later_copy", name
            assert later[b_content_id]["possible_infringement"] is True
            assert later[b_content_id]["registered_by"]["slug"] == tenant_b.slug
    with open(variants(a_file, tmp_path)["reencoded_scaled"], "rb") as handle:
        page = APIClient().post("/verify/", {"file": handle}, format="multipart").content.decode()
    assert page.count('<li class="match"') == 1 and 'data-relation="later_copy"' in page
    assert "Possible infringement" in page


# --- uploads of another studio's registered video ------------------------------------------------


@pytest.fixture
def registered_video(tenant_a, tmp_path, django_capture_on_commit_callbacks):
    job = start_job(tenant_a, django_capture_on_commit_callbacks)
    drain(django_capture_on_commit_callbacks)
    registrations_anchor()
    body = job_body(tenant_a, job)
    assert body["status"] == "completed" and body["rights"]["registration"]["status"] == "confirmed"
    video = download(tenant_a.client("viewer"), f"/api/v1/jobs/{job.pk}/video", tmp_path / "original.mp4")
    return body["rights"]["content_id"], video


COPIES = {"reencoded_scaled": "scale=640:-2", "cropped_5pct": "crop=iw*0.95:ih*0.95,scale=640:-2"}


def copy_of(video, tmp_path, how: str):
    if how == "exact":
        return video
    out = tmp_path / f"copy-{how}.mp4"
    ffmpeg("-i", video, "-vf", COPIES[how], "-c:v", "libx264", "-crf", "26", "-an", out)
    return out


@pytest.mark.parametrize("how", ["reencoded_scaled", "exact", "cropped_5pct"])
def test_an_uploaded_copy_is_held_and_rejected_leaves_nothing_public(
        registered_video, tenant_a, tmp_path, operator_client, how):
    original_id, video = registered_video
    copier = make_tenant("studio-c")
    copy = copy_of(video, tmp_path, how)
    with open(copy, "rb") as handle:
        response = copier.client("producer").post("/api/v1/assets", {"file": handle}, format="multipart")
    assert response.status_code == 201, response.content[:300]
    body = response.json()
    if how == "cropped_5pct" and not body["held"]:
        # A 5% crop can defeat both the frame fingerprints (pHash of the whole frame) and the watermark's
        # synchronisation, depending on the picture: geometric robustness is issue 15's. When it is seen,
        # everything below must hold for it as for the other copies.
        pytest.xfail("this 5% crop was not recognised by any method (issue 15)")
    assert body["held"] is True and tenant_a.organization.public_name in body["hold_message"]
    assert [m["content_id"] for m in body["infringements"]] == [original_id]
    assert body["infringements"][0]["matched_fraction"] >= 0.5
    assert body["rights"]["registration"] is None and body["rights"]["hold_state"] == "held"
    assert body["rights"]["certificate_url"] is None
    registrations_anchor()
    with tenant_scope(copier.organization):
        held = Content.objects.select_related("registration").get(content_id=body["content_id"])
        assert not hasattr(held, "registration") or held.registration is None
    assert certificate_status(body["content_id"]) == (404, 404)

    # The uploader sees why, and does not get a protected file carrying its own credential.
    portal = Client()
    portal.force_login(copier.owner)
    page = portal.get(f"/assets/{held.pk}/").content.decode()
    assert 'data-state="held"' in page and tenant_a.organization.public_name in page
    assert 'id="asset-preview-held"' in page and portal.get(f"/assets/{held.pk}/?file=protected").status_code == 404

    for path in (video, copy):
        answer = verify(path)
        assert named(answer) == {tenant_a.slug} and answer["later_registrations"] == [], path
        assert body["content_id"] not in str(answer)

    response = operator_client.post(reverse("admin:rights_content_changelist"),
                                    {"action": "reject_rights_hold", "_selected_action": [held.pk]})
    assert response.status_code == 302
    registrations_anchor()
    with dangerously_unscoped():
        entry = AuditEntry.objects.get(action="content.rights_reject")
        held.refresh_from_db()
    assert entry.organization_id == copier.organization.pk and held.rights_hold["rejected_at"]
    assert certificate_status(body["content_id"]) == (404, 404)
    for path in (video, copy):
        answer = verify(path)
        assert named(answer) == {tenant_a.slug} and body["content_id"] not in str(answer)
    # A rejected copy is no one's claim: a later upload is checked against the original only.
    with open(copy, "rb") as handle:
        again = tenant_a.client("producer").post("/api/v1/assets", {"file": handle}, format="multipart").json()
    assert all(match["content_id"] != body["content_id"] for match in again["infringements"])


def test_a_released_upload_is_a_later_registration_never_an_owner(
        registered_video, tenant_a, tenant_b, tmp_path, operator_client):
    original_id, video = registered_video
    copy = copy_of(video, tmp_path, "reencoded_scaled")
    with open(copy, "rb") as handle:
        body = tenant_b.client("producer").post("/api/v1/assets", {"file": handle}, format="multipart").json()
    assert body["held"] is True
    with dangerously_unscoped():
        held = Content.objects.get(content_id=body["content_id"])
    response = operator_client.post(reverse("admin:rights_content_changelist"),
                                    {"action": "release_rights_hold", "_selected_action": [held.pk]})
    assert response.status_code == 302
    registrations_anchor()
    assert certificate_status(body["content_id"]) == (200, 200)
    with dangerously_unscoped():
        assert AuditEntry.objects.filter(action="content.rights_release", organization=tenant_b.organization).exists()
    for path in (video, copy):
        answer = verify(path)
        assert named(answer) == {tenant_a.slug} and answer["original"]["content_id"] == original_id, path
        later = answer["later_registrations"]
        assert [(e["content_id"], e["relation"], e["registered_by"]["slug"]) for e in later] == [
            (body["content_id"], "later_copy", tenant_b.slug)], path
    # The same owner registering its own video again is a later version, not a second owner.
    with open(video, "rb") as handle:
        own = tenant_a.client("producer").post("/api/v1/assets", {"file": handle}, format="multipart").json()
    assert own["held"] is False
    registrations_anchor()
    answer = verify(video)
    relations = {e["content_id"]: e["relation"] for e in answer["later_registrations"]}
    assert named(answer) == {tenant_a.slug} and relations[own["content_id"]] == "later_version"
