"""A job's references to the studio's uploaded assets (generation.references): a product or character image that
every frame builds on (composited by the offline renderer, the image endpoint's edit input), a shot's own
image, and a logo in the corner or on an end card."""
import hashlib
import io
import subprocess

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image, ImageDraw

from accounts.audit import Actor
from config.errors import DomainError
from config.media import ffmpeg_exe
from config.tenancy import tenant_scope
from generation import media, services
from generation.models import Artifact, Job, Step
from generation.providers.base import REFERENCE_ASSET, StageContext
from generation.providers.offline import OfflineImage
from generation.references import references_validate
from generation.tests.test_pipeline import drain, reload, runs_by_step, start
from rights.models import Content

RED, MAGENTA = (220, 30, 40), (255, 0, 255)


def bottle_on_white(size=(300, 600)) -> bytes:
    """A product photo: a red bottle on a plain white backdrop."""
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rounded_rectangle([w * 0.3, h * 0.25, w * 0.7, h * 0.95], radius=w * 0.1, fill=RED)
    draw.rectangle([w * 0.42, h * 0.05, w * 0.58, h * 0.25], fill=RED)
    draw.rectangle([w * 0.36, h * 0.5, w * 0.64, h * 0.62], fill=(255, 255, 255))  # its white label
    return _png(image)


def magenta_logo(size=(200, 100)) -> bytes:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle([0, 0, size[0] - 1, size[1] - 1], fill=(*MAGENTA, 255))
    return _png(image)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def asset(tenant, data: bytes, content_id: str, kind="image", **extra) -> Content:
    with tenant_scope(tenant.organization):
        return Content.objects.create(organization=tenant.organization, content_id=content_id, kind=kind,
                                      source="upload", sha256=hashlib.sha256(data).hexdigest(),
                                      original_sha256=hashlib.sha256(data).hexdigest(),
                                      original=ContentFile(data, name=f"{content_id}.png"), **extra)


def near(pixels: np.ndarray, colour, tolerance=60) -> np.ndarray:
    return np.abs(pixels.astype(int) - np.array(colour)).sum(axis=-1) < tolerance


def frame_at(video, at_s: float, width: int, height: int) -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", f"{at_s:.3f}", "-i", str(video), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


# --- validation -------------------------------------------------------------------------------------

def test_only_the_studios_own_usable_image_assets_can_be_referenced(tenant_a, tenant_b):
    asset(tenant_a, bottle_on_white(), "BOTTLE22")
    asset(tenant_a, b"mp4", "VIDEO222", kind="video")
    asset(tenant_a, bottle_on_white(), "HELD2222", rights_hold={"matches": [{"content_id": "X"}]})
    asset(tenant_b, bottle_on_white(), "OTHER222")
    org = tenant_a.organization.pk
    with tenant_scope(tenant_a.organization):
        assert references_validate(organization_id=org, value={"image": "BOTTLE22", "logo": "BOTTLE22",
                                                               "logo_placement": "end_card"}) == {
            "image": "BOTTLE22", "logo": "BOTTLE22", "logo_placement": "end_card"}
        assert references_validate(organization_id=org, value={"logo": "BOTTLE22"})["logo_placement"] == "corner"
        assert references_validate(organization_id=org, value=None) == {}
        for value, key, why in [({"image": "OTHER222"}, "image", "no such asset"),
                                ({"image": "VIDEO222"}, "image", "an image is needed"),
                                ({"logo": "HELD2222"}, "logo", "held"),
                                ({"logo": "BOTTLE22", "logo_placement": "middle"}, "logo_placement", "one of"),
                                ({"sound": "BOTTLE22"}, "sound", "Unknown key")]:
            with pytest.raises(DomainError) as refused:
                references_validate(organization_id=org, value=value)
            assert why in refused.value.fields["options"]["references"][key][0], value


def test_the_api_refuses_another_studios_asset_and_keeps_its_own(tenant_a, tenant_b):
    asset(tenant_a, bottle_on_white(), "BOTTLE33")
    asset(tenant_b, bottle_on_white(), "OTHER333")
    project = tenant_a.project("Refs")
    client = tenant_a.key_client(["job:create", "job:read"])
    refused = client.post("/api/v1/jobs", {"project": str(project.pk), "topic": "A bottle on a table",
                                           "options": {"references": {"image": "OTHER333"}}}, format="json")
    assert refused.status_code == 400
    assert "no such asset" in refused.json()["error"]["fields"]["options"]["references"]["image"][0]
    made = client.post("/api/v1/jobs", {"project": str(project.pk), "topic": "A bottle on a table",
                                        "options": {"references": {"image": "BOTTLE33", "logo": "BOTTLE33"}}},
                       format="json")
    assert made.status_code == 201, made.json()
    assert made.json()["options"]["references"] == {"image": "BOTTLE33", "logo": "BOTTLE33",
                                                    "logo_placement": "corner"}


# --- the offline renderer and compose ----------------------------------------------------------------

def test_the_offline_renderer_composites_the_reference_without_its_backdrop(tmp_path):
    photo = tmp_path / "bottle.png"
    photo.write_bytes(bottle_on_white())
    ctx = StageContext(organization_id=1, job_id="refs", options={"resolution": "480p", "aspect_ratio": "16:9"},
                       prompts={}, work_dir=tmp_path)
    shot = {"number": 1, "description": "A quiet harbour at dawn", "shot_type": "medium", "camera_movement": "static",
            "duration_s": 3, "dialogue": "", "composition": "", "lighting": ""}
    plain = OfflineImage().frame(shot=shot, style={}, out=tmp_path / "plain.png", ctx=ctx)
    result = OfflineImage().frame(shot={**shot, REFERENCE_ASSET: str(photo)}, style={}, out=tmp_path / "ref.png",
                                  ctx=ctx)
    assert "reference" not in plain.usage["drawn"]["elements"] and not plain.usage["reference_used"]
    drawn = result.usage["drawn"]
    assert result.usage["reference_used"] and "reference" in drawn["elements"] and drawn["subject"] == "reference"
    x0, y0, x1, y1 = drawn["reference"]
    pixels = np.asarray(Image.open(tmp_path / "ref.png").convert("RGB"))
    inside = pixels[y0:y1, x0:x1]
    assert y1 - y0 >= 0.36 * 480 - 1
    assert near(inside, RED).mean() > 0.2  # the bottle is there ...
    label = inside[int((y1 - y0) * 0.52):int((y1 - y0) * 0.6), int((x1 - x0) * 0.4):int((x1 - x0) * 0.6)]
    assert near(label, (255, 255, 255), 30).mean() > 0.9  # ... with its white label ...
    corners = np.concatenate([inside[:8, :8].reshape(-1, 3), inside[-8:, -8:].reshape(-1, 3)])
    assert near(corners, (255, 255, 255), 30).mean() == 0  # ... but not its white backdrop
    assert near(np.asarray(Image.open(tmp_path / "plain.png").convert("RGB")), RED).mean() < near(pixels, RED).mean()


def _two_clips(tmp_path, size="320x180"):
    clips = []
    for n, colour in enumerate(("0x336699", "0x669933"), start=1):
        clip = tmp_path / f"clip{n}.mp4"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"color=c={colour}:s={size}:d=3:r=24",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)], check=True)
        clips.append(clip)
    shots = [{"number": n, "duration_s": 3, "dialogue": ""} for n in (1, 2)]
    return clips, shots


def test_a_corner_logo_is_in_every_frame_and_an_end_card_only_at_the_end(tmp_path):
    logo = tmp_path / "logo.png"
    logo.write_bytes(magenta_logo())
    clips, shots = _two_clips(tmp_path)
    corner = media.compose_timed(clips, shots, tmp_path / "corner.mp4", 320, 180, 24, logo=logo)["video"]
    for at in (0.5, 3.0, 5.5):
        frame = frame_at(corner, at, 320, 180)
        assert near(frame[:40, 260:], MAGENTA).mean() > 0.2, at  # the top right corner
        assert near(frame[90:, :160], MAGENTA).mean() == 0
    shots_spoken = [{**shot, "dialogue": "Words on screen"} for shot in shots]
    low = media.compose_timed(clips, shots_spoken, tmp_path / "low.mp4", 320, 180, 24, logo=logo,
                              subtitle_style={"position": "top"})["video"]
    frame = frame_at(low, 1.0, 320, 180)
    assert near(frame[140:, 260:], MAGENTA).mean() > 0.2 and near(frame[:40, 260:], MAGENTA).mean() == 0
    card = media.compose_timed(clips, shots, tmp_path / "card.mp4", 320, 180, 24, logo=logo,
                               logo_placement="end_card", card_color=(0, 0, 0))["video"]
    first, last = frame_at(card, 1.0, 320, 180), frame_at(card, 5.9, 320, 180)
    assert near(first, MAGENTA).mean() == 0
    assert near(last[70:110, 120:200], MAGENTA).mean() > 0.9  # the logo centred on the card
    assert last[5:20, 5:20].mean() > 30  # a black style colour is lifted: review must not see a black shot
    assert not near(last[5:20, 5:20], (0x66, 0x99, 0x33), 40).any()  # the card covers the shot
    with pytest.raises(media.MediaError):
        media.compose_timed(clips, shots, tmp_path / "none.mp4", 320, 180, 24, logo=tmp_path / "missing.png")


# --- through the pipeline -----------------------------------------------------------------------------

def test_a_job_builds_on_the_studios_product_and_logo_and_a_shot_can_use_its_own(tenant_a, run_commits):
    asset(tenant_a, bottle_on_white(), "BOTTLE44")
    asset(tenant_a, magenta_logo(), "LOGO4444")
    job = start(tenant_a, run_commits, topic="A reusable glass water bottle on a hike",
                options={"duration_s": 8, "resolution": "480p", "shots": 3,
                         "references": {"image": "BOTTLE44", "logo": "LOGO4444", "logo_placement": "end_card"}})
    drain(run_commits)
    job = reload(tenant_a, job)
    assert job.status == "completed", job.error
    with tenant_scope(tenant_a.organization):
        frames = {s.shot: s.artifact.data for s in Step.objects.filter(job=job, stage="frame").select_related(
            "artifact")}
        video = Artifact.objects.get(pk=job.steps.get(stage="compose").artifact_id)
        path = video.file.path
    assert all(data["reference"] == "BOTTLE44" and data["reference_used"] and "reference" in data["drawn"]["elements"]
               for data in frames.values())
    last = frame_at(path, 7.9, 854, 480)
    assert near(last[200:280, 380:480], MAGENTA).mean() > 0.9  # the end card's logo
    assert near(frame_at(path, 1.0, 854, 480), MAGENTA).mean() == 0

    # Shot 2 without the product: only that shot and what follows run again.
    before = runs_by_step(tenant_a, job)
    with tenant_scope(tenant_a.organization):
        with pytest.raises(DomainError):
            services.shot_edit(job=job, number=2, changes={"reference": "NOPE2222"}, actor=Actor(user=tenant_a.owner))
        run_commits(lambda: services.shot_edit(job=job, number=2, changes={"reference": ""},
                                               actor=Actor(user=tenant_a.owner)))
    drain(run_commits)
    after = runs_by_step(tenant_a, job)
    assert sorted(key[0] for key in after if after[key] != before[key] and key[1] in (1, 2, 3)) == ["clip", "frame"]
    with tenant_scope(tenant_a.organization):
        data = Step.objects.select_related("artifact").get(job=job, stage="frame", shot=2).artifact.data
    assert "reference" not in data and "reference" not in data["drawn"]["elements"]
    assert reload(tenant_a, job).status == "completed"


def test_the_new_job_form_offers_the_studios_usable_images_and_starts_a_job_with_them(client, tenant_a, tenant_b):
    asset(tenant_a, bottle_on_white(), "BOTTLE55", title="Glass bottle, studio shot")
    asset(tenant_a, magenta_logo(), "LOGO5555", title="Our logo")
    asset(tenant_a, bottle_on_white(), "HELD5555", title="Held one", rights_hold={"matches": [{"content_id": "X"}]})
    asset(tenant_b, bottle_on_white(), "OTHER555", title="Their bottle")
    asset(tenant_a, b"RIFF....WAVE", "TRACK555", kind="audio", title="Our theme")
    project = tenant_a.project("Refs")
    client.force_login(tenant_a.member("producer"))
    html = client.get("/jobs/new/").content.decode()
    assert 'id="job-references"' in html and "Glass bottle, studio shot" in html and "Our logo" in html
    assert "Held one" not in html and "Their bottle" not in html
    assert '<option value="TRACK555">Our theme</option>' in html.split('id="id_music"')[1].split("</select>")[0]
    assert "Our theme" not in html.split('id="id_logo"')[1].split("</select>")[0]
    data = {"project": str(project.pk), "topic": "A reusable glass water bottle", "style": "", "duration_s": "8",
            "aspect_ratio": "16:9", "resolution": "480p", "shots": "2", "voice": "", "template": ""}
    refused = client.post("/jobs/new/", {**data, "reference_image": "OTHER555"})
    assert refused.status_code == 400 and 'id="id_reference_image-errors"' in refused.content.decode()
    response = client.post("/jobs/new/", {**data, "reference_image": "BOTTLE55", "logo": "LOGO5555",
                                          "logo_placement": "end_card", "music": "TRACK555"})
    assert response.status_code == 302, response.content[:400]
    with tenant_scope(tenant_a.organization):
        job = Job.objects.get()
    assert job.options["references"] == {"image": "BOTTLE55", "logo": "LOGO5555", "logo_placement": "end_card",
                                         "music": "TRACK555"}


def test_the_studios_music_track_is_the_bed(tenant_a, run_commits, tmp_path):
    track = tmp_path / "theme.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-ac", "2",
                    str(track)], check=True)
    data = track.read_bytes()
    with tenant_scope(tenant_a.organization):
        Content.objects.create(organization=tenant_a.organization, content_id="THEME666", kind="audio",
                               source="upload", mime_type="audio/wav", sha256=hashlib.sha256(data).hexdigest(),
                               original_sha256=hashlib.sha256(data).hexdigest(),
                               original=ContentFile(data, name="theme.wav"))
    with tenant_scope(tenant_a.organization), pytest.raises(DomainError):  # an image is no music
        references_validate(organization_id=tenant_a.organization.pk, value={"music": "BOTTLE77"})
    asset(tenant_a, bottle_on_white(), "BOTTLE77")
    with tenant_scope(tenant_a.organization), pytest.raises(DomainError) as refused:
        references_validate(organization_id=tenant_a.organization.pk, value={"music": "BOTTLE77"})
    assert "a music track is needed" in refused.value.fields["options"]["references"]["music"][0]
    job = start(tenant_a, run_commits, options={"duration_s": 8, "resolution": "480p", "shots": 2, "voice": "none",
                                                "references": {"music": "THEME666"}})
    drain(run_commits)
    job = reload(tenant_a, job)
    assert job.status == "completed", job.error
    with tenant_scope(tenant_a.organization):
        path = Artifact.objects.get(pk=job.steps.get(stage="compose").artifact_id).file.path
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-ac", "1", "-ar", "8000", "-t", "6",
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    samples = np.frombuffer(pcm, "<f4")
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * 8000 / len(samples)
    assert abs(peak_hz - 440) < 3  # the track's tone, looped past its 3 s, not the style's generated bed
    assert spectrum[int(len(spectrum) * 430 / 4000):int(len(spectrum) * 450 / 4000)].sum() > 0.5 * spectrum.sum()
    loudness = media.loudness_measure(path)
    assert abs(loudness["integrated_lufs"] + 16) <= 2 and loudness["true_peak_dbtp"] <= -1
