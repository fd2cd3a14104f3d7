"""Uploading an existing asset protects and registers it, for members with the scope only."""
import io
import subprocess

from generation.media import ffmpeg_exe
from generation.worker import registrations_anchor


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
