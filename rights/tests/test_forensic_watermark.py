"""The forensic mark: a share link's id added to the luma of an already protected video. Each copy names its own
link, the content id stays readable, both survive a downscaled CRF 28 re-encode, and a copy without the mark
reads as unmarked."""
from __future__ import annotations

import re
import subprocess

import cv2
import numpy as np
import pytest

from config.media import ffmpeg_exe, probe
from rights.watermark import (
    PAYLOAD_BITS,
    content_id_new,
    forensic_detect,
    forensic_frame,
    forensic_read,
    payload_bits,
    payload_decode,
    watermark_detect,
    watermark_forensic_video,
    watermark_frame,
    watermark_read,
    watermark_video,
)

SECONDS = 4
# testsrc2 panned (every block moves, so the codec cannot just carry the mark over from the last frame) with a
# light temporal grain; contrast and saturation brought in from the pattern's full-scale bars, whose clipped
# primaries no chroma mark (ours or the library's) can move, to what a rendered frame has.
SOURCE = (f"testsrc2=s=1600x900:r=24:d={SECONDS},eq=contrast=0.8:saturation=0.7,"
          "crop=1280:720:x='t*60':y='t*30',noise=alls=3:allf=t")


def ffmpeg(*args: str, loglevel: str = "error") -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", loglevel, "-y", *args], check=True,
                          capture_output=True)


def distinct_ids(count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        new = content_id_new()
        if new not in ids:
            ids.append(new)
    return ids


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """A protected video as the platform delivers it (content id A), two forensic copies of it for two share
    links, and the first copy downscaled to 640 px and re-encoded at CRF 28."""
    folder = tmp_path_factory.mktemp("forensic")
    source, protected = folder / "source.mp4", folder / "protected.mp4"
    ffmpeg("-f", "lavfi", "-i", SOURCE, "-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           str(source))
    content_id, link_1, link_2 = distinct_ids(3)
    watermark_video(source, protected, content_id)
    copy_1, copy_2, small = folder / "copy1.mp4", folder / "copy2.mp4", folder / "copy1_640_crf28.mp4"
    summaries = [watermark_forensic_video(protected, copy_1, link_1),
                 watermark_forensic_video(protected, copy_2, link_2)]
    ffmpeg("-i", str(copy_1), "-vf", "scale=640:-2", "-c:v", "libx264", "-crf", "28", str(small))
    return {"content_id": content_id, "links": (link_1, link_2), "protected": protected,
            "copies": (copy_1, copy_2), "small": small, "summaries": summaries}


def test_each_copy_is_marked_cheaply_and_looks_the_same(copies):
    for summary, copy in zip(copies["summaries"], copies["copies"]):
        # The protected video's PSNR of Y against the copy, codec loss of one more CRF 18 generation included.
        report = ffmpeg("-i", str(copy), "-i", str(copies["protected"]), "-lavfi", "psnr", "-f", "null", "-",
                        loglevel="info").stderr
        encoded = round(float(re.search(rb"PSNR y:([\d.]+)", report).group(1)), 2)
        print(f"\n{summary['mark_id']}: {summary['frames']} frames {summary['width']}x{summary['height']} in "
              f"{summary['seconds']} s ({summary['planes']}), PSNR Y of the mark {summary['psnr']} dB, "
              f"after encoding {encoded} dB")
        assert summary["frames"] == 24 * SECONDS and summary["planes"] == "yuv420p"
        assert summary["psnr"] >= 40 and encoded >= 38


def test_the_content_id_is_still_read_in_each_copy(copies):
    for copy in copies["copies"]:
        assert watermark_detect(copy)["content_id"] == copies["content_id"]


def test_each_copy_names_its_own_share_link(copies):
    link_1, link_2 = copies["links"]
    first, second = (forensic_detect(copy) for copy in copies["copies"])
    assert first["mark_id"] == link_1, (first, copies["links"])
    assert second["mark_id"] == link_2, (second, copies["links"])
    assert first["frames_read"] == second["frames_read"] == 12
    assert min(first["confidence"], second["confidence"]) > 0.6  # an unmarked read: about 0.13


def test_both_marks_survive_a_640_px_crf28_reencode(copies):
    assert probe(copies["small"])["width"] == 640
    found = forensic_detect(copies["small"])
    print(f"\n640 px CRF 28: forensic {found}")
    assert found["mark_id"] == copies["links"][0], (found, copies["links"])
    assert watermark_detect(copies["small"])["content_id"] == copies["content_id"]


def test_a_copy_reencoded_through_rgb_and_brightened_still_names_its_link(copies, tmp_path):
    """Another tool's decode or a levels tweak moves all of luma by a level or two (here the RGB round trip about
    -1.8, +2.3 from the lift), enough to lose an s0 lattice read: the reader takes the offset back."""
    edited = tmp_path / "edited.mp4"
    ffmpeg("-i", str(copies["copies"][1]), "-vf", "lutyuv=y=val+2,format=rgb24,format=yuv420p",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", str(edited))
    found = forensic_detect(edited)
    print(f"\nthrough RGB, +2 levels, CRF 23: forensic {found}")
    assert found["mark_id"] == copies["links"][1], (found, copies["links"])


def test_the_protected_video_has_no_forensic_mark(copies):
    found = forensic_detect(copies["protected"])
    assert found["mark_id"] is None and found["frames_read"] == 12
    assert found["confidence"] < 0.3  # unmarked luma: each bit's blocks split about evenly


def test_audio_is_kept_in_each_copy(copies):
    source_audio = probe(copies["protected"])["audio_codec"]
    assert source_audio == "aac"
    for copy in copies["copies"]:
        info = probe(copy)
        assert (info["video_codec"], info["audio_codec"]) == ("h264", source_audio)
        assert abs(info["duration_s"] - SECONDS) < 0.2


def test_a_video_with_other_colour_tags_is_marked_through_bgr(tmp_path):
    """Our own protected output is untagged yuv420p (its planes are marked); a BT.709-tagged file goes the BGR
    way, which ffmpeg converts with the file's own tags."""
    source, copy = tmp_path / "source.mp4", tmp_path / "copy.mp4"
    ffmpeg("-f", "lavfi", "-i", SOURCE.replace(f"d={SECONDS}", "d=0.5"), "-vf", "scale=640:360", "-c:v", "libx264",
           "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries",
           "bt709", "-color_trc", "bt709", str(source))
    link = content_id_new()
    summary = watermark_forensic_video(source, copy, link)
    assert summary["planes"] == "bgr24" and summary["frames"] == 12 and summary["psnr"] >= 40
    assert forensic_detect(copy)["mark_id"] == link


def test_a_bgr_frame_is_marked_in_luma_only():
    """The BGR path (videos with other colour tags): the same change on B, G and R leaves OpenCV's U and V as
    they were, so the content marks read exactly as before, and each reader sees only its own mark."""
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:720, 0:1280].astype(np.float32)
    frame = np.stack([x / 1280 * 150 + 50, y / 720 * 140 + 60, (x + y) / 2000 * 120 + 70], -1)
    frame += cv2.GaussianBlur(rng.normal(0, 10, frame.shape).astype(np.float32), (0, 0), 1.5)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    content_id, link = distinct_ids(2)
    protected = watermark_frame(frame, content_id)
    assert forensic_read(protected)[0] is None
    marked = forensic_frame(protected, link)
    before, after = (cv2.cvtColor(image, cv2.COLOR_BGR2YUV).astype(int) for image in (protected, marked))
    assert np.abs(after[:, :, 1:] - before[:, :, 1:]).max() <= 1  # OpenCV's own rounding of U and V
    assert np.abs(after[:, :, 0] - before[:, :, 0]).mean() > 1
    (found, confidence), (found_before, confidence_before) = watermark_read(marked), watermark_read(protected)
    assert found == found_before == content_id and abs(confidence - confidence_before) < 0.01
    assert forensic_read(marked)[0] == link


def test_an_inverted_read_never_names_another_link():
    """The reader also tries its bits inverted (what a luma offset of half a period reads): that must never turn
    one valid id into another."""
    for _ in range(5000):
        assert payload_decode([1 - bit for bit in payload_bits(content_id_new())]) is None
    assert payload_decode([1] * PAYLOAD_BITS) is None
