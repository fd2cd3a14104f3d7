"""Uploading an existing asset protects and registers it, for members with the scope only."""
import io
import subprocess

from config.media import ffmpeg_exe
from generation.queue.worker import registrations_anchor


def test_upload_protects_and_registers_an_image(tenant_a, tenant_b, tmp_path):
    png = tmp_path / "poster.png"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "mandelbrot=size=640x360",
                    "-frames:v", "1", str(png)], check=True)
    producer = tenant_a.client("producer")
    with open(png, "rb") as handle:
        response = producer.post("/api/v1/assets", {"file": handle, "title": "Poster"}, format="multipart")
    assert response.status_code == 201, response.content[:500]
    body = response.json()
    assert body["kind"] == "image" and body["rights"]["fingerprint_count"] == 1
    assert body["rights"]["registration"]["status"] == "pending" and body["rights"]["c2pa"]["label"]
    registrations_anchor()
    detail = producer.get(f"/api/v1/assets/{body['id']}").json()
    assert detail["rights"]["registration"]["status"] in ("anchored", "confirmed")
    assert detail["rights"]["registration"]["on_chain"] is True
    assert tenant_b.client().get(f"/api/v1/assets/{body['id']}").status_code == 404
    viewer = tenant_a.client("viewer")
    refused = viewer.post("/api/v1/assets", {"file": io.BytesIO(png.read_bytes())}, format="multipart")
    assert refused.status_code == 403
    bad = producer.post("/api/v1/assets", {"file": io.BytesIO(b"not media")}, format="multipart")
    assert bad.status_code == 415


def test_confirmed_registration_emits_content_registered(tenant_a, tmp_path, settings):
    from accounts.audit import Actor
    from config.tenancy import tenant_scope
    from generation.models import WebhookDelivery
    from generation.webhooks import webhook_create

    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    with tenant_scope(tenant_a.organization):
        webhook_create(organization=tenant_a.organization, url="http://127.0.0.1:9/hook",
                       events=["content.registered"], actor=Actor(user=tenant_a.owner))
    png = tmp_path / "still.png"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "mandelbrot=size=320x240",
                    "-frames:v", "1", str(png)], check=True)
    with open(png, "rb") as handle:
        content_id = tenant_a.client("producer").post("/api/v1/assets", {"file": handle},
                                                      format="multipart").json()["content_id"]
    registrations_anchor()
    with tenant_scope(tenant_a.organization):
        delivery = WebhookDelivery.objects.get(event="content.registered")
    assert delivery.payload["content_id"] == content_id and delivery.payload["registration"]["tx_hash"]


def _tone(path, seconds=3, *extra):
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", *extra, str(path)], check=True)
    return path


def test_a_music_track_is_signed_and_registered_and_odd_audio_is_refused(tenant_a, tmp_path, settings):
    producer = tenant_a.client("producer")
    for name in ("track.wav", "track.mp3", "track.flac"):
        with open(_tone(tmp_path / name), "rb") as handle:
            response = producer.post("/api/v1/assets", {"file": handle, "title": "Theme"}, format="multipart")
        assert response.status_code == 201, (name, response.content[:500])
        body = response.json()
        assert body["kind"] == "audio" and body["mime_type"].startswith("audio/") and abs(body["duration_s"] - 3) < 0.2
        assert body["rights"]["fingerprint_count"] == 0 and body["rights"]["c2pa"]["label"]
        assert body["rights"]["registration"]["status"] == "pending"
    # Cover art is a picture to decode: refused from the header, as for videos.
    cover = tmp_path / "cover.png"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=red:s=64x64",
                    "-frames:v", "1", str(cover)], check=True)
    with_art = tmp_path / "art.mp3"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(_tone(tmp_path / "plain.wav")), "-i",
                    str(cover), "-map", "0", "-map", "1", "-c:v", "mjpeg", "-disposition:v", "attached_pic",
                    str(with_art)], check=True)
    refused = producer.post("/api/v1/assets", {"file": io.BytesIO(with_art.read_bytes())}, format="multipart")
    assert refused.status_code == 415 and "cover art" in refused.json()["error"]["message"]
    settings.MEDIA_MAX_AUDIO_S = 2
    long = producer.post("/api/v1/assets", {"file": io.BytesIO(_tone(tmp_path / "long.wav").read_bytes())},
                         format="multipart")
    assert long.status_code == 413 and long.json()["error"]["code"] == "media_too_large"
    # Verification still takes only what carries frames.
    verify = producer.post("/api/v1/verify", {"file": io.BytesIO((tmp_path / "track.wav").read_bytes())},
                           format="multipart")
    assert verify.status_code == 415
