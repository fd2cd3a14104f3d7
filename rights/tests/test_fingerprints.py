"""Fingerprints: sampling, hashing, storage in the tenant's scope, and the global bucket search."""
from __future__ import annotations

import random
import secrets
import subprocess

import numpy as np
import pytest
from django.db import connection
from PIL import Image

from config.tenancy import ScopeError, current_scope, dangerously_unscoped, tenant_scope
from config.media import ffmpeg_exe
from rights import fingerprints
from rights.fingerprints import (
    band_radii,
    bucket_keys,
    buckets_pack,
    fingerprint_buckets_rebuild,
    fingerprint_search,
    fingerprints_compute,
    fingerprints_store,
    frames_sample,
    hamming,
    hash_bands,
    hash_to_signed,
    hash_to_unsigned,
    phash_image,
    probe_keys,
)
from rights.models import Content, Fingerprint
from rights.models.fingerprints import FingerprintBucket

RESULT_KEYS = {"content_id", "organization_id", "matched_frames", "matched_fraction", "best_distance"}


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-nostdin", *args], check=True, capture_output=True)


def _lavfi(out, source: str, *, seconds: int = 8) -> str:
    _ffmpeg("-f", "lavfi", "-i", source, "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
            "-crf", "18", "-pix_fmt", "yuv420p", str(out))
    return str(out)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Source videos from ffmpeg's generators, their re-encodes, and stills (no downloads)."""
    work = tmp_path_factory.mktemp("fingerprints")
    files = {
        "testsrc": _lavfi(work / "testsrc.mp4", "testsrc2=size=960x540:rate=12"),
        "mandelbrot": _lavfi(work / "mandelbrot.mp4", "mandelbrot=size=960x540:rate=12"),
        "life": _lavfi(work / "life.mp4", "life=size=240x135:rate=12:seed=7:ratio=0.3:mold=8,scale=960:540"),
        "life_other": _lavfi(work / "life-other.mp4",
                             "life=size=240x135:rate=12:seed=1234:ratio=0.5:mold=8,scale=960:540"),
    }
    files["crf28"] = str(work / "crf28.mp4")
    _ffmpeg("-i", files["testsrc"], "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", files["crf28"])
    files["640"] = str(work / "640.mp4")
    _ffmpeg("-i", files["testsrc"], "-vf", "scale=640:-2", "-c:v", "libx264", "-preset", "veryfast", files["640"])
    # A still at one of the sampled seconds (testsrc2 changes a lot between frames: see the report).
    files["png"] = str(work / "frame.png")
    _ffmpeg("-ss", "3", "-i", files["testsrc"], "-frames:v", "1", files["png"])
    files["jpeg"] = str(work / "frame.jpg")
    Image.open(files["png"]).convert("RGB").save(files["jpeg"], quality=50)
    # Two sources joined at 2.5 s: a scene cut between the once-a-second samples.
    files["cut"] = str(work / "cut.mp4")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=12:duration=2.5",
            "-f", "lavfi", "-i", "mandelbrot=size=320x180:rate=12", "-filter_complex",
            "[1:v]trim=duration=2.5,setpts=PTS-STARTPTS[m];[0:v][m]concat=n=2:v=1[v]", "-map", "[v]",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", files["cut"])
    return files


@pytest.fixture(scope="module")
def hashes(media):
    return {name: fingerprints_compute(path) for name, path in media.items()}


def _content(tenant, hashes=None) -> Content:
    with tenant_scope(tenant.organization):
        content = Content.objects.create(content_id=secrets.token_hex(6), kind="video", source="upload",
                                         sha256=secrets.token_hex(32))
        if hashes is not None:
            fingerprints_store(content=content, hashes=hashes)
    return content


def _values(pairs) -> list[int]:
    return [value for _at, value in pairs]


def _flip(value: int, distance: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), distance):
        value ^= 1 << bit
    return value


# --- hashes ---------------------------------------------------------------------------------------

def test_hashes_are_stored_as_signed_int64_and_split_into_five_bands():
    for unsigned in (0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 0x0123456789ABCDEF):
        signed = hash_to_signed(unsigned)
        assert -(1 << 63) <= signed < 1 << 63
        assert hash_to_unsigned(signed) == unsigned
    # 13, 13, 13, 13 and 12 bits, the most significant first.
    assert hash_bands(0xFFF8_0000_0000_0000) == (0x1FFF, 0, 0, 0, 0)
    assert hash_bands(hash_to_signed(0x0000_0000_0000_0FFF)) == (0, 0, 0, 0, 0xFFF)
    assert hash_bands(1 << 12) == (0, 0, 0, 1, 0)
    value = 0x0123456789ABCDEF
    parts = hash_bands(value)
    assert sum(part << shift for part, shift in zip(parts, (51, 38, 25, 12, 0))) == value
    assert bucket_keys(value) == [band * 8192 + part for band, part in enumerate(parts)]
    assert hamming(hash_to_signed(1 << 63), 0) == 1


def test_phash_image_is_a_signed_64_bit_int_stable_across_size_and_jpeg(media):
    image = Image.open(media["png"])
    value = phash_image(image)
    assert isinstance(value, int) and -(1 << 63) <= value < 1 << 63
    assert hamming(value, phash_image(image.resize((480, 270)))) <= 4
    assert hamming(value, phash_image(Image.open(media["jpeg"]))) <= 4


def test_probed_bands_catch_every_hash_within_the_distance():
    """The pigeonhole the search relies on: within distance r, some band is within its probe radius."""
    rng = random.Random(5)
    assert band_radii(8) == [1, 1, 1, 1, 0]
    assert band_radii(4) == [0, 0, 0, 0, 0]
    assert band_radii(2) == [0, 0, 0, -1, -1]
    assert len(probe_keys(12345, max_distance=8)) == 4 * 14 + 1
    for max_distance in range(0, 16):
        radii = band_radii(max_distance)
        for _ in range(300):
            a = rng.getrandbits(64)
            b = _flip(a, rng.randint(0, max_distance), rng)
            assert any(
                radius >= 0 and bin(x ^ y).count("1") <= radius
                for x, y, radius in zip(hash_bands(a), hash_bands(b), radii)
            ), (max_distance, hex(a), hex(b))
            assert set(bucket_keys(b)) & set(probe_keys(a, max_distance=max_distance))


# --- sampling -------------------------------------------------------------------------------------

def test_frames_sample_takes_one_frame_a_second_plus_scene_cuts(media):
    times = [at for at, _frame in frames_sample(media["cut"])]
    assert times[:3] == [0.0, 1.0, 2.0]
    assert any(2.4 < at < 2.6 for at in times), times  # the cut, between two seconds
    assert len(times) >= 5
    assert all(later > earlier for earlier, later in zip(times, times[1:]))


def test_frames_sample_is_capped(media):
    assert len(frames_sample(media["testsrc"], frames_max=3)) == 3


def test_an_image_gives_one_frame(media):
    (at_s, frame), = frames_sample(media["png"])
    assert at_s == 0.0 and frame.mode == "L"
    assert len(fingerprints_compute(media["jpeg"])) == 1


def test_flat_frames_are_not_fingerprinted(tmp_path):
    black = _lavfi(tmp_path / "black.mp4", "color=c=black:size=320x180:rate=12", seconds=3)
    assert fingerprints_compute(black) == []


# --- store ----------------------------------------------------------------------------------------

def test_store_replaces_the_contents_fingerprints_in_its_scope(tenant_a, hashes):
    content = _content(tenant_a)
    with tenant_scope(tenant_a.organization):
        assert fingerprints_store(content=content, hashes=hashes["testsrc"]) == len(hashes["testsrc"])
        assert fingerprints_store(content=content, hashes=hashes["testsrc"]) == len(hashes["testsrc"])
        rows = list(Fingerprint.objects.filter(content=content).order_by("at_s"))
        content.refresh_from_db()
    assert content.fingerprint_count == len(rows) == len(hashes["testsrc"])
    assert [(row.at_s, row.phash) for row in rows] == hashes["testsrc"]
    assert all(row.organization_id == tenant_a.organization.pk for row in rows)
    # Stored twice, in the buckets once: the second store took the first one's entries out.
    assert _bucket_contents() == _expected_buckets()


def _bucket_contents() -> dict[int, list[int]]:
    return {key: sorted(np.frombuffer(bytes(packed), dtype="<u8").tolist())
            for key, packed in FingerprintBucket.objects.values_list("key", "hashes") if len(packed)}


def _expected_buckets() -> dict[int, list[int]]:
    with dangerously_unscoped():
        values = np.array(list(Fingerprint.objects.values_list("phash", flat=True)), dtype=np.int64)
    return {key: sorted(np.frombuffer(packed, dtype="<u8").tolist()) for key, packed in buckets_pack(values)}


def test_buckets_follow_replacements_and_repeated_hashes(tenant_a, tenant_b):
    a, b = _content(tenant_a), _content(tenant_b)
    with tenant_scope(tenant_a.organization):
        fingerprints_store(content=a, hashes=[(0.0, 7), (1.0, 7), (2.0, -1)])
    with tenant_scope(tenant_b.organization):
        fingerprints_store(content=b, hashes=[(0.0, 7), (1.0, 1 << 40)])
    assert _bucket_contents() == _expected_buckets()
    assert _bucket_contents()[bucket_keys(7)[-1]] == [7, 7, 7]
    with tenant_scope(tenant_a.organization):
        fingerprints_store(content=a, hashes=[(0.0, 7)])
    assert _bucket_contents() == _expected_buckets()
    assert _bucket_contents()[bucket_keys(7)[-1]] == [7, 7]
    with tenant_scope(tenant_a.organization):
        fingerprints_store(content=a, hashes=[])
    assert _bucket_contents() == _expected_buckets()


def test_rebuild_drops_the_hashes_of_deleted_contents(tenant_a):
    content = _content(tenant_a, [(0.0, 99), (1.0, 1 << 50)])
    with dangerously_unscoped():
        content.delete()
    assert _bucket_contents()  # left behind: they find no owner
    assert fingerprint_search([99]) == []
    assert fingerprint_buckets_rebuild() == 0
    assert _bucket_contents() == {}


def test_store_refuses_outside_the_contents_scope(tenant_a, tenant_b):
    content = _content(tenant_a)
    with pytest.raises(ScopeError):
        fingerprints_store(content=content, hashes=[(0.0, 1)])
    with tenant_scope(tenant_b.organization), pytest.raises(ScopeError):
        fingerprints_store(content=content, hashes=[(0.0, 1)])
    with dangerously_unscoped():
        assert not Fingerprint.objects.filter(content=content).exists()


# --- search ---------------------------------------------------------------------------------------

@pytest.fixture
def library(tenant_a, tenant_b, hashes):
    """testsrc2 and life protected by studio A, mandelbrot by studio B."""
    return {
        "testsrc": _content(tenant_a, hashes["testsrc"]),
        "life": _content(tenant_a, hashes["life"]),
        "mandelbrot": _content(tenant_b, hashes["mandelbrot"]),
    }


def _found(results) -> dict:
    return {result["content_id"]: result for result in results}


@pytest.mark.parametrize("query", ["crf28", "640"])
def test_a_reencoded_or_scaled_copy_matches(library, hashes, query):
    results = fingerprint_search(_values(hashes[query]))
    assert results[0]["content_id"] == library["testsrc"].pk
    assert results[0]["matched_fraction"] >= 0.9
    assert results[0]["best_distance"] <= 2
    assert library["mandelbrot"].pk not in _found(results)


@pytest.mark.parametrize("query", ["png", "jpeg"])
def test_one_frame_as_an_image_matches(library, hashes, query):
    results = fingerprint_search(_values(hashes[query]))
    assert [result["content_id"] for result in results] == [library["testsrc"].pk]
    assert results[0]["matched_fraction"] == 1.0


def test_an_unrelated_video_does_not_match(library, hashes):
    assert fingerprint_search(_values(hashes["life_other"])) == []
    assert fingerprint_search(_values(hashes["life_other"]), min_fraction=0.0) == []


def test_search_spans_organizations_and_returns_only_ids(library, tenant_b, hashes):
    assert current_scope() is None
    results = fingerprint_search(_values(hashes["mandelbrot"]))
    assert results[0]["content_id"] == library["mandelbrot"].pk
    assert results[0]["organization_id"] == tenant_b.organization.pk
    assert results[0]["matched_fraction"] == 1.0 and results[0]["best_distance"] == 0
    assert all(set(result) == RESULT_KEYS for result in results)
    assert current_scope() is None


def test_search_inside_a_tenant_scope_still_sees_other_tenants_and_keeps_the_scope(library, tenant_a, hashes):
    with tenant_scope(tenant_a.organization):
        results = fingerprint_search(_values(hashes["mandelbrot"]))
        assert current_scope() == tenant_a.organization.pk
    assert results[0]["content_id"] == library["mandelbrot"].pk


def test_search_takes_two_or_three_queries(library, hashes, django_assert_num_queries):
    """The buckets, then the owners of the hashes that matched; a query longer than its spread frames
    adds one for the candidates' fingerprints. The same on both back ends, whatever the table size."""
    frames = _values(hashes["crf28"])
    assert len(frames) > 4  # more than the 4 spread frames at min_fraction 0.5
    with django_assert_num_queries(3):
        assert fingerprint_search(frames, min_fraction=0.5)
    with django_assert_num_queries(2):
        assert fingerprint_search(frames[:4], min_fraction=0.5)
    with django_assert_num_queries(2):
        assert fingerprint_search(frames, min_fraction=0.0)  # every frame through the buckets
    with django_assert_num_queries(1):
        assert fingerprint_search([0x5555_5555_5555_5555]) == []
    with django_assert_num_queries(0):
        assert fingerprint_search([]) == []


def test_two_stage_search_counts_every_frame(library, hashes):
    """Spread frames find the candidates, then every frame is scored: the same results as sending
    every frame through the buckets."""
    frames = _values(hashes["crf28"]) + _values(hashes["life"])[:4]
    assert len(frames) > 8  # more than the 8 spread frames at min_fraction 0.25
    two_stage = fingerprint_search(frames)
    every_frame = fingerprint_search(frames, min_fraction=0.0)
    assert two_stage == [result for result in every_frame if result["matched_fraction"] >= 0.25]
    assert [result["content_id"] for result in two_stage[:2]] == [library["testsrc"].pk, library["life"].pk]
    assert two_stage[0]["matched_frames"] == len(_values(hashes["crf28"]))


def test_two_stage_search_finds_a_stretch_of_a_quarter_of_the_query(tenant_a, tenant_b):
    """A protected stretch covering min_fraction of a long query holds some of its spread frames."""
    rng = random.Random(21)
    protected = [rng.getrandbits(64) for _ in range(15)]
    content = _content(tenant_a, [(float(second), value) for second, value in enumerate(protected)])
    _content(tenant_b, [(0.0, rng.getrandbits(64)) for _ in range(500)])
    for start in range(0, 46):
        query = [rng.getrandbits(64) for _ in range(60)]
        query[start:start + 15] = [_flip(value, 3, rng) for value in protected]
        results = fingerprint_search(query)
        assert [(result["content_id"], result["matched_frames"]) for result in results] == [(content.pk, 15)], start


def test_long_queries_are_cut_to_evenly_spaced_frames(library, hashes, monkeypatch):
    monkeypatch.setattr(fingerprints, "SEARCH_HASHES_MAX", 4)
    results = fingerprint_search(_values(hashes["crf28"]))
    assert results[0]["content_id"] == library["testsrc"].pk
    assert results[0]["matched_frames"] == 4


def test_search_finds_exactly_the_hashes_within_the_distance(tenant_a, tenant_b):
    """Planted neighbours at every distance among random noise: in up to the limit, out beyond it."""
    rng = random.Random(11)
    noise = _content(tenant_a, [(0.0, rng.getrandbits(64)) for _ in range(3000)])
    query = rng.getrandbits(64)
    planted = {distance: _content(tenant_b, [(0.0, _flip(query, distance, rng))]) for distance in range(0, 13)}
    for max_distance in (4, 8, 10):
        found = _found(fingerprint_search([query], max_distance=max_distance, limit_contents=50))
        found.pop(noise.pk, None)  # a random neighbour is possible, if unlikely; it is not what we assert
        assert {content_id: result["best_distance"] for content_id, result in found.items()} == {
            planted[distance].pk: distance for distance in range(0, max_distance + 1)
        }


def test_search_refuses_a_distance_it_cannot_serve_cheaply():
    with pytest.raises(ValueError):
        fingerprint_search([1], max_distance=16)


def test_limit_and_fraction_threshold(library, tenant_a, hashes):
    half = hashes["testsrc"][: len(hashes["testsrc"]) // 2]
    _content(tenant_a, half)
    results = fingerprint_search(_values(hashes["testsrc"]))
    assert [result["matched_fraction"] for result in results] == [1.0, 0.5]
    assert len(fingerprint_search(_values(hashes["testsrc"]), limit_contents=1)) == 1
    assert len(fingerprint_search(_values(hashes["testsrc"]), min_fraction=0.6)) == 1


# --- indexes --------------------------------------------------------------------------------------

def _random_library(tenant, count: int) -> list[int]:
    rng = random.Random(3)
    values = [rng.getrandbits(64) for _ in range(count)]
    _content(tenant, [(0.0, value) for value in values])
    return values


def test_buckets_read_per_query_hash_do_not_grow_with_the_table(tenant_a, django_assert_num_queries):
    """57 buckets per query hash at distance 8 however many fingerprints are stored, read by primary
    key; the candidates checked are the hashes in those buckets (about 0.7% of them)."""
    values = _random_library(tenant_a, 5000)
    keys = probe_keys(values[0], max_distance=8)
    assert len(set(keys)) == 57
    with dangerously_unscoped():
        candidates = sum(len(packed) // 8 for packed in
                         FingerprintBucket.objects.filter(key__in=keys).values_list("hashes", flat=True))
    assert 0 < candidates < 5000 * 0.02
    with django_assert_num_queries(2):
        assert fingerprint_search(values[:1], min_fraction=0.0)


@pytest.mark.postgres
def test_postgresql_reads_the_buckets_by_primary_key(tenant_a):
    """On a test-sized table a sequential scan is cheapest, so the planner is told to avoid one: a read
    the primary key cannot serve would still scan. bench/verify_lookup.py shows the plan at 1M rows."""
    values = _random_library(tenant_a, 5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE rights_fingerprintbucket")
        cursor.execute("SET LOCAL enable_seqscan = off")
    with dangerously_unscoped():
        plan = FingerprintBucket.objects.filter(key__in=probe_keys(values[0], max_distance=8)).explain()
        assert "rights_fingerprintbucket_pkey" in plan and "Seq Scan" not in plan, plan
        plan = Fingerprint.objects.filter(phash__in=[hash_to_signed(values[0])]).explain()
        assert "fingerprint_phash" in plan and "Seq Scan" not in plan, plan


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_stores_lose_no_bucket_entry(tenant_a, tenant_b):
    """Two workers storing fingerprints that share buckets at the same time: the buckets are locked in key
    order, so neither overwrites the other's entries and they do not deadlock."""
    import threading

    from django.db import connections

    rng = random.Random(8)
    shared = [rng.getrandbits(64) for _ in range(300)]  # the same hashes in both: every bucket is shared
    _content(tenant_a, [(0.0, value) for value in shared])  # the buckets exist already: no insert to wait on
    contents = [_content(tenant_a), _content(tenant_b)]
    errors = []
    barrier = threading.Barrier(2)

    def store(tenant, content):
        try:
            barrier.wait()
            with tenant_scope(tenant.organization):
                fingerprints_store(content=content, hashes=[(0.0, value) for value in shared])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=store, args=pair) for pair in zip((tenant_a, tenant_b), contents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _bucket_contents() == _expected_buckets()
    assert len(_bucket_contents()[bucket_keys(shared[0])[0]]) >= 3
