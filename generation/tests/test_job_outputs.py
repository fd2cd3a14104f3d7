"""Downloads with ranges, the job page's data, and live events over the job websocket."""
import hashlib
import subprocess

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from accounts.audit import Actor
from accounts.tests.test_websocket import session_cookie
from config.asgi import application
from config.media import ffmpeg_exe
from config.tenancy import tenant_scope
from generation import services
from generation.queue.worker import run_until_idle
from rights.models import Content


@pytest.fixture
def finished_job(tenant_a, django_capture_on_commit_callbacks):
    project = tenant_a.project("Outputs")
    with tenant_scope(tenant_a.organization), django_capture_on_commit_callbacks(execute=True):
        job, _ = services.job_create(organization=tenant_a.organization, actor=Actor(user=tenant_a.owner),
                                     project_id=project.pk, topic="Paper boats on a rainy canal",
                                     options={"duration_s": 6, "resolution": "480p", "shots": 2})
    while True:
        with django_capture_on_commit_callbacks(execute=True):
            if not run_until_idle():
                break
    return job


def test_video_supports_range_requests_and_frames_and_thumbnail_download(tenant_a, finished_job, tmp_path):
    client = tenant_a.client("viewer")
    body = client.get(f"/api/v1/jobs/{finished_job.pk}").json()
    assert body["status"] == "completed" and body["output"]["video_url"].endswith("/video")
    whole = client.get(f"/api/v1/jobs/{finished_job.pk}/video")
    data = b"".join(whole.streaming_content)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes" and data[4:8] == b"ftyp"
    # The delivered file is the protected one, and it keeps compose's soft subtitle track.
    delivered = tmp_path / "delivered.mp4"
    delivered.write_bytes(data)
    header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(delivered)], capture_output=True,
                            text=True).stderr
    streams = [line for line in header.splitlines() if "Stream #" in line]
    assert [kind in stream for kind, stream in zip(("Video: h264", "Audio: aac", "Subtitle: mov_text"), streams)] == [
        True, True, True], streams
    with tenant_scope(tenant_a.organization):
        assert Content.objects.get(job=finished_job).sha256 == hashlib.sha256(data).hexdigest()
    part = client.get(f"/api/v1/jobs/{finished_job.pk}/video", HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert b"".join(part.streaming_content) == data[100:200]
    tail = client.get(f"/api/v1/jobs/{finished_job.pk}/video", HTTP_RANGE="bytes=-10")
    assert b"".join(tail.streaming_content) == data[-10:]
    assert client.get(f"/api/v1/jobs/{finished_job.pk}/video", HTTP_RANGE="bytes=999999999-").status_code == 416
    thumb = client.get(f"/api/v1/jobs/{finished_job.pk}/thumbnail")
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    frame_url = body["shots"][0]["frame_url"]
    frame = client.get(frame_url.replace("http://testserver", ""))
    assert frame.status_code == 200 and b"".join(frame.streaming_content)[:4] == b"\x89PNG"


def test_the_subtitles_download_as_srt_and_vtt_matching_the_narration(tenant_a, tenant_b, finished_job):
    api = tenant_a.client()
    srt = api.get(f"/api/v1/jobs/{finished_job.pk}/subtitles.srt")
    vtt = api.get(f"/api/v1/jobs/{finished_job.pk}/subtitles.vtt")
    assert srt.status_code == vtt.status_code == 200
    assert srt["Content-Type"].startswith("application/x-subrip") and vtt["Content-Type"].startswith("text/vtt")
    srt_text, vtt_text = b"".join(srt.streaming_content).decode(), b"".join(vtt.streaming_content).decode()
    assert vtt_text.startswith("WEBVTT") and "-->" in srt_text
    with tenant_scope(tenant_a.organization):
        compose = finished_job.steps.get(stage="compose").artifact
        dialogue = [line for line in (compose.data or {}).get("cues") or []]
    spoken = " ".join(" ".join(cue["lines"]) for cue in dialogue)
    assert spoken and all(word in " ".join(srt_text.split()) for word in spoken.split())
    page = tenant_a.client().get(f"/jobs/{finished_job.pk}/")
    assert f"/jobs/{finished_job.pk}/subtitles.vtt".encode() in page.content and b"<track" in page.content
    assert tenant_a.client().get(f"/jobs/{finished_job.pk}/subtitles.srt").status_code == 200
    # another organization's job answers the same 404 as a missing one
    assert tenant_b.client().get(f"/api/v1/jobs/{finished_job.pk}/subtitles.srt").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_job_websocket_streams_events_in_order_and_resumes_after_an_id(tenant_a, tenant_b, finished_job):
    cookie, cookie_b = session_cookie(tenant_a.owner), session_cookie(tenant_b.owner)
    path = f"/ws/jobs/{finished_job.pk}"
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]

    async def scenario():
        ws = WebsocketCommunicator(application, path, headers=headers)
        assert (await ws.connect())[0]
        snapshot = await ws.receive_json_from()
        assert snapshot == {"type": "snapshot", "status": "completed", "progress": 1.0, "message": "Completed"}
        seen = []
        while True:
            event = await ws.receive_json_from(timeout=3)
            seen.append(event)
            if event["type"] == "completed":
                break
        await ws.disconnect()
        ids = [event["id"] for event in seen]
        assert ids == sorted(ids) and seen[-1]["output"]["video_artifact"]
        resumed = WebsocketCommunicator(application, f"{path}?after={ids[-2]}", headers=headers)
        await resumed.connect()
        await resumed.receive_json_from()
        assert (await resumed.receive_json_from(timeout=3))["id"] == ids[-1]
        await resumed.disconnect()
        other = WebsocketCommunicator(application, path, headers=[*headers[:2], (b"cookie", cookie_b)])
        connected, code = await other.connect()
        assert not connected and code == 4404  # another studio's job: like a missing one

    async_to_sync(scenario)()
