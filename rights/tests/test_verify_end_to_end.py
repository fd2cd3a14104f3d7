"""Must-show: a generated video, downloaded from the API, is found by every method that should find it,
through re-encoding, downscaling and single frames; an unrelated video is not found."""
import subprocess

import pytest
from rest_framework.test import APIClient

from accounts.audit import Actor
from config.media import ffmpeg_exe
from config.tenancy import tenant_scope
from generation import services
from generation.queue.worker import registrations_anchor, run_until_idle


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *map(str, args)], check=True,
                   timeout=120)


def verify(path):
    with open(path, "rb") as handle:
        response = APIClient().post("/api/v1/verify", {"file": handle}, format="multipart")
    assert response.status_code == 200, response.content[:300]
    return response.json()


def methods(body):
    return {match["method"] for match in body["matches"]}


@pytest.fixture
def generated(tenant_a, tmp_path, django_capture_on_commit_callbacks):
    project = tenant_a.project("Evidence")
    with tenant_scope(tenant_a.organization), django_capture_on_commit_callbacks(execute=True):
        job, _ = services.job_create(organization=tenant_a.organization, actor=Actor(user=tenant_a.owner),
                                     project_id=project.pk, topic="Lanterns drifting over a mountain lake",
                                     options={"duration_s": 8, "resolution": "720p", "shots": 2})
    while True:
        with django_capture_on_commit_callbacks(execute=True):
            if not run_until_idle():
                break
    registrations_anchor()  # what the workers' sweeper does every few seconds
    registrations_anchor()
    client = tenant_a.client("viewer")
    body = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert body["status"] == "completed", body["error"]
    video = tmp_path / "downloaded.mp4"
    video.write_bytes(b"".join(client.get(f"/api/v1/jobs/{job.pk}/video").streaming_content))
    return body, video


def test_generated_video_is_found_by_every_method_and_survives_transformations(generated, tmp_path, tenant_a):
    job, video = generated
    rights = job["rights"]
    assert rights["registration"]["status"] in ("anchored", "confirmed") and rights["registration"]["on_chain"]
    assert rights["c2pa"]["label"] and rights["fingerprint_count"] > 0

    as_is = verify(video)
    assert as_is["verdict"] == "registered"
    exact = next(m for m in as_is["matches"] if m["method"] == "exact_hash")
    assert exact["content_id"] == rights["content_id"] and exact["registration"]["on_chain"] is True
    assert exact["owner"]["slug"] == tenant_a.slug and exact["registration"]["proof"] is not None
    assert {"exact_hash", "c2pa", "watermark", "fingerprint"} <= methods(as_is)

    crf28 = tmp_path / "crf28.mp4"
    ffmpeg("-i", video, "-c:v", "libx264", "-crf", "28", "-c:a", "copy", crf28)
    assert {"watermark", "fingerprint"} <= methods(verify(crf28))

    small = tmp_path / "small.mp4"
    ffmpeg("-i", video, "-vf", "scale=640:-2", "-c:v", "libx264", "-crf", "23", "-an", small)
    found = methods(verify(small))
    assert "fingerprint" in found and "watermark" in found

    png, jpeg = tmp_path / "frame.png", tmp_path / "frame.jpg"
    ffmpeg("-ss", "2", "-i", video, "-frames:v", "1", png)
    ffmpeg("-i", png, "-q:v", "12", jpeg)  # about JPEG quality 50
    for still in (png, jpeg):
        body = verify(still)
        assert body["verdict"] == "registered" and body["matches"][0]["content_id"] == rights["content_id"], still

    unrelated = tmp_path / "unrelated.mp4"
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=1280x720:rate=24", "-t", "4", "-pix_fmt", "yuv420p", unrelated)
    assert verify(unrelated)["verdict"] == "not_found" and verify(unrelated)["matches"] == []
