"""Perceptual fingerprints: pHash of frames sampled once a second and at scene cuts, and a global
Hamming-distance search over every stored one that reads a few dozen index buckets instead of scanning.

Search is multi-index hashing. A 64-bit hash is cut into m = 5 bands (13, 13, 13, 13 and 12 bits); write
r = m*q + a (0 <= a < m). If two hashes differ in at most r bits, either one of the first a + 1 bands
differs in at most q bits or some band differs in at most q - 1 bits (otherwise the band distances would
add up to more than r). So the search reads bands 0..a within radius q and the others within radius
q - 1: for r = 8, the 14 values within one bit in each 13-bit band and the exact value of the 12-bit
one, 57 buckets per query hash. A bucket (FingerprintBucket) holds every stored hash with that band
value, packed, so the candidates (about 0.7% of the hashes, 7,000 at a million) come back as 57 rows
and are checked in numpy. Row by row instead (an index entry per hash and band, four 16-bit bands,
188 probes and 2,900 candidate rows per hash), the database spent most of its time stepping through
candidate rows: three times slower on PostgreSQL at a million (bench/verify_lookup.py).

A query of many frames (a video) goes in two stages: a few frames spread over it through the buckets
find the candidate contents, then every frame is compared with all of those contents' fingerprints.
"""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from itertools import combinations
from math import ceil
from pathlib import Path

import imagehash
import numpy as np
from django.db import connection, transaction
from PIL import Image

from config.tenancy import UNSCOPED, ScopeError, current_scope, dangerously_unscoped
from config.media import MediaError, ffmpeg_exe
from config.media_limits import media_run
from rights.models import Content, Fingerprint
from rights.models.fingerprints import FingerprintBucket

BAND_BITS = (13, 13, 13, 13, 12)  # band 0 the most significant bits
BANDS = len(BAND_BITS)
BAND_SHIFTS = tuple(sum(BAND_BITS[band + 1:]) for band in range(BANDS))
BUCKETS_PER_BAND = 1 << max(BAND_BITS)  # bucket key = band * BUCKETS_PER_BAND + band value
HASH_MASK = (1 << 64) - 1

FRAME_SIZE = 128  # frames are decoded small: pHash looks at a 32x32 grey thumbnail anyway
SAMPLE_INTERVAL_S = 1.0
SCENE_THRESHOLD = 0.3
FRAMES_MAX = 600
FLAT_FRAME_STD = 3.0  # a near-uniform frame (black, fade) hashes like every other one: it identifies nothing
SEARCH_HASHES_MAX = 120  # a query is cut to this many frames, evenly spaced
SEARCH_PROBES_MIN = 4  # frames of a long query that go through the buckets, at the least
SEARCH_CANDIDATES_MAX = 100  # contents whose fingerprints the second stage of a long query reads
KEYS_PER_STATEMENT = 10000  # values in one IN (...) (SQLite allows 32,766 parameters)
DECODE_TIMEOUT_S = 600


# --- hashes ---------------------------------------------------------------------------------------

def hash_to_signed(value: int) -> int:
    """An unsigned 64-bit hash as the signed int64 the database stores."""
    value &= HASH_MASK
    return value - (1 << 64) if value >= 1 << 63 else value


def hash_to_unsigned(value: int) -> int:
    """A stored (signed int64) hash back to its unsigned 64 bits."""
    return value & HASH_MASK


def hash_bands(value: int) -> tuple[int, ...]:
    """The bands of a hash (signed or unsigned), band 0 the most significant."""
    value = hash_to_unsigned(value)
    return tuple((value >> shift) & ((1 << bits) - 1) for shift, bits in zip(BAND_SHIFTS, BAND_BITS))


def bucket_keys(value: int) -> list[int]:
    """The keys of the buckets that hold a stored hash, one per band."""
    return [band * BUCKETS_PER_BAND + part for band, part in enumerate(hash_bands(value))]


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & HASH_MASK).bit_count()


def phash_image(image: Image.Image) -> int:
    """The 64-bit pHash of an image, as a signed int64."""
    bits = imagehash.phash(image).hash.flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return hash_to_signed(value)


# --- frames ---------------------------------------------------------------------------------------

_PTS_TIME = re.compile(rb"\bn:\s*\d+\s+pts:\s*-?\d+\s+pts_time:\s*(-?[\d.]+)")
_DURATION = re.compile(rb"Duration:\s*(\d+):(\d+):([\d.]+)")


def frames_sample(path: Path | str, *, frames_max: int = FRAMES_MAX) -> list[tuple[float, Image.Image]]:
    """Small grey frames of a video at least once a second (more sparsely when the video is longer than
    `frames_max` seconds) and at each scene cut, with their times; an image gives its one frame."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"no such file: {path}")
    interval = max(SAMPLE_INTERVAL_S, _duration_s(path) / frames_max)
    # Scaled before `select`, so the scene score is computed on the small frames too.
    select = (f"isnan(prev_selected_t)+gte(t-prev_selected_t\\,{interval:.3f})"
              f"+gt(scene\\,{SCENE_THRESHOLD})")
    args = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-an", "-sn",
        "-vf", f"scale={FRAME_SIZE}:{FRAME_SIZE}:flags=area,format=gray,select='{select}',showinfo",
        "-fps_mode", "vfr", "-frames:v", str(frames_max), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1",
    ]
    try:
        completed = media_run(args, timeout=DECODE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MediaError(f"decoding {path.name} took over {DECODE_TIMEOUT_S} s") from None
    if completed.returncode != 0:
        raise MediaError(f"ffmpeg could not decode {path.name}: {completed.stderr.decode(errors='replace')[-1500:]}")
    frame_bytes = FRAME_SIZE * FRAME_SIZE
    count = len(completed.stdout) // frame_bytes
    times = [float(match) for match in _PTS_TIME.findall(completed.stderr)]
    frames = []
    for index in range(count):
        data = completed.stdout[index * frame_bytes:(index + 1) * frame_bytes]
        at_s = round(times[index], 3) if index < len(times) else index * interval
        frames.append((at_s, Image.frombytes("L", (FRAME_SIZE, FRAME_SIZE), data)))
    return frames


def _duration_s(path: Path) -> float:
    completed = media_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], timeout=60)
    match = _DURATION.search(completed.stderr)
    if not match:
        return 0.0
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def fingerprints_compute(path: Path | str) -> list[tuple[float, int]]:
    """(time in seconds, signed pHash) of each sampled frame that carries some picture (not flat)."""
    return [
        (at_s, phash_image(frame))
        for at_s, frame in frames_sample(path)
        if float(np.asarray(frame, dtype=np.float32).std()) >= FLAT_FRAME_STD
    ]


# --- store ----------------------------------------------------------------------------------------

def fingerprints_store(*, content: Content, hashes: list[tuple[float, int]]) -> int:
    """Replace the content's fingerprints with `hashes` ((at_s, pHash) pairs), and their entries in the
    search buckets; returns how many.

    Runs in the content's tenant scope (or unscoped system work). bulk_create skips the model's save(),
    which is where the scope is checked, so the check is made here."""
    scope = current_scope()
    if scope is None:
        raise ScopeError("fingerprints_store was called outside a tenant scope")
    if scope != UNSCOPED and scope != content.organization_id:
        raise ScopeError("fingerprints_store was called for another organization's content")
    rows = [
        Fingerprint(organization_id=content.organization_id, content_id=content.pk, at_s=float(at_s),
                    phash=hash_to_signed(value))
        for at_s, value in hashes
    ]
    with transaction.atomic():
        stored = Fingerprint.objects.filter(content_id=content.pk)
        removed = list(stored.values_list("phash", flat=True))
        stored.delete()
        Fingerprint.objects.bulk_create(rows, batch_size=2000)
        _buckets_update(removed=removed, added=[row.phash for row in rows])
        Content.objects.filter(pk=content.pk).update(fingerprint_count=len(rows))
    content.fingerprint_count = len(rows)
    return len(rows)


def _pack(values) -> bytes:
    return np.asarray(values, dtype=np.uint64).astype("<u8").tobytes()


def _unpack(packed) -> np.ndarray:
    return np.frombuffer(packed, dtype="<u8").astype(np.uint64)


def _buckets_update(*, removed: list[int], added: list[int]) -> None:
    """Take `removed` out of their buckets (one entry each) and put `added` in. The buckets are locked
    in key order (created first where missing), so concurrent stores neither lose an update nor
    deadlock; on SQLite the write transaction already serializes them."""
    changes: dict[int, tuple[list[int], list[int]]] = {}
    for values, side in ((removed, 0), (added, 1)):
        for value in values:
            for key in bucket_keys(value):
                changes.setdefault(key, ([], []))[side].append(hash_to_unsigned(value))
    keys = sorted(changes)
    if not keys:
        return
    FingerprintBucket.objects.bulk_create([FingerprintBucket(key=key) for key in keys], ignore_conflicts=True,
                                          batch_size=2000)
    current = {}
    for chunk in _chunks(keys, KEYS_PER_STATEMENT):
        current.update(FingerprintBucket.objects.select_for_update().filter(key__in=chunk).order_by("key")
                       .values_list("key", "hashes"))
    buckets = []
    for key in keys:
        out, into = changes[key]
        values = _unpack(current[key])
        for value in out:
            at = np.flatnonzero(values == np.uint64(value))
            if len(at):
                values = np.delete(values, at[0])
        values = np.concatenate([values, np.array(into, dtype=np.uint64)])
        buckets.append(FingerprintBucket(key=key, hashes=_pack(values)))
    FingerprintBucket.objects.bulk_create(buckets, update_conflicts=True, unique_fields=["key"],
                                          update_fields=["hashes"], batch_size=1000)


def fingerprint_buckets_rebuild() -> int:
    """Rebuild every search bucket from the stored fingerprints (after a bulk load, or to drop the hashes
    of deleted contents); returns the number of buckets. Unscoped system work, in one transaction."""
    with dangerously_unscoped(), transaction.atomic():
        values = stored_hashes(Fingerprint.objects.all())
        FingerprintBucket.objects.all().delete()
        buckets = [FingerprintBucket(key=key, hashes=packed) for key, packed in buckets_pack(values)]
        FingerprintBucket.objects.bulk_create(buckets, batch_size=1000)
    return len(buckets)


def stored_hashes(fingerprints, *, chunk: int = 100_000) -> np.ndarray:
    """Every phash of a Fingerprint queryset (int64), read in primary key ranges. Not with .iterator():
    on PostgreSQL that is a server-side cursor, on which the backend's row level security setting is
    only declared, never run, so a first unscoped read through it sees no rows."""
    parts, last = [], 0
    while rows := list(fingerprints.filter(pk__gt=last).order_by("pk").values_list("pk", "phash")[:chunk]):
        last = rows[-1][0]
        parts.append(np.array([value for _pk, value in rows], dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def buckets_pack(values: np.ndarray) -> list[tuple[int, bytes]]:
    """(key, packed hashes) of every non-empty bucket for these stored hashes (int64 or uint64)."""
    values = np.asarray(values).view(np.uint64)
    buckets = []
    for band, (shift, bits) in enumerate(zip(BAND_SHIFTS, BAND_BITS)):
        parts = ((values >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
        order = np.argsort(parts, kind="stable")
        parts, ordered = parts[order], values[order]
        starts = np.flatnonzero(np.diff(parts, prepend=-1))
        for start, end in zip(starts.tolist(), starts[1:].tolist() + [len(parts)]):
            buckets.append((band * BUCKETS_PER_BAND + int(parts[start]), _pack(ordered[start:end])))
    return buckets


# --- search ---------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _flips(bits: int, radius: int) -> tuple[int, ...]:
    """Every mask of at most `radius` set bits among the low `bits`."""
    masks = [0]
    for distance in range(1, radius + 1):
        masks += [sum(1 << bit for bit in chosen) for chosen in combinations(range(bits), distance)]
    return tuple(masks)


def band_radii(max_distance: int) -> list[int]:
    """The probe radius of each band for a search within `max_distance` (-1: that band is not probed)."""
    q, a = divmod(max_distance, BANDS)
    return [q if band <= a else q - 1 for band in range(BANDS)]


def probe_keys(value: int, *, max_distance: int) -> list[int]:
    """The buckets to read for one query hash: together they hold every stored hash within
    `max_distance` of it (and others, which the exact check drops)."""
    keys = []
    for band, (part, radius) in enumerate(zip(hash_bands(value), band_radii(max_distance))):
        if radius >= 0:
            keys += [band * BUCKETS_PER_BAND + (part ^ flip) for flip in _flips(BAND_BITS[band], radius)]
    return keys


def _query_sample(hashes: list[int]) -> list[int]:
    unique = list(dict.fromkeys(hash_to_unsigned(value) for value in hashes))
    return _spread(unique, SEARCH_HASHES_MAX)


def _spread(values: list, count: int) -> list:
    """`count` of `values` evenly spaced (all of them if there are no more)."""
    if len(values) <= count:
        return list(values)
    step = len(values) / count
    return [values[int((index + 0.5) * step)] for index in range(count)]


def _chunks(values: list, size: int) -> list[list]:
    return [values[start:start + size] for start in range(0, len(values), size)]


def fingerprint_search(hashes: list[int], *, max_distance: int = 8, min_fraction: float = 0.25,
                       limit_contents: int = 20) -> list[dict]:
    """Contents of any organization with fingerprints within `max_distance` bits of the query's frames.

    Global by design (public verification, infringement checks): an explicit unscoped read that needs
    no active scope and returns only ids; callers decide what to show. A query longer than
    SEARCH_HASHES_MAX distinct frames is cut to that many, evenly spaced. Each result:
    `content_id` (the Content pk), `organization_id`, `matched_frames`, `matched_fraction` (of the
    query's frames with a fingerprint of that content within the distance; at least `min_fraction`),
    `best_distance`. Best first; at most `limit_contents`.

    Up to `ceil(2 / min_fraction)` frames (every frame when min_fraction is 0) go through the buckets,
    spread evenly, so a stretch of at least `min_fraction` of the query holds about two of them: the
    contents they match (at most SEARCH_CANDIDATES_MAX, most matches first) are the candidates, and if
    the query had more frames, all of them are then compared with all of those contents' fingerprints,
    so `matched_frames` counts every frame. A content that matches none of the spread frames is not
    found. Queries: the buckets, the owners of the hashes that matched (when any did), and for a longer
    query the candidates' fingerprints, whatever the size of the table.
    """
    if not 0 <= max_distance <= 15:
        raise ValueError("max_distance must be between 0 and 15")
    queries = _query_sample(hashes)
    if not queries:
        return []
    probes = queries if min_fraction <= 0 else _spread(queries, max(SEARCH_PROBES_MIN, ceil(2 / min_fraction)))
    with dangerously_unscoped():
        found = _bucket_matches(probes, max_distance=max_distance)
        if not found:
            return []
        owners = _owners(found)
        matches: dict = {}
        for index, close in enumerate(found):
            for value, distance in close.items():
                for content_id, organization_id in owners.get(value, ()):
                    match = matches.setdefault(content_id, {"organization_id": organization_id, "frames": set(),
                                                            "best": 64})
                    match["frames"].add(index)
                    match["best"] = min(match["best"], distance)
        if len(probes) < len(queries) and matches:
            candidates = sorted(matches, key=lambda content_id: (-len(matches[content_id]["frames"]),
                                                                 matches[content_id]["best"], str(content_id)))
            matches = _content_matches(candidates[:SEARCH_CANDIDATES_MAX], queries, max_distance=max_distance)
    return _rank(matches, len(queries), min_fraction=min_fraction, limit_contents=limit_contents)


def _bucket_matches(queries: list[int], *, max_distance: int) -> list[dict[int, int]]:
    """For each query hash, {stored hash: distance} of the stored hashes within `max_distance`."""
    keys_of = [probe_keys(value, max_distance=max_distance) for value in queries]
    packed = dict(_select("key, hashes", FingerprintBucket, "key", sorted({key for keys in keys_of for key in keys}),
                          pg_type="int"))
    found = []
    for value, keys in zip(queries, keys_of):
        stored = np.frombuffer(b"".join(packed[key] for key in keys if key in packed), dtype="<u8")
        distances = np.bitwise_count(stored ^ np.uint64(value))
        close = distances <= max_distance
        found.append(dict(zip(stored[close].tolist(), distances[close].tolist())))
    return found if any(found) else []


def _owners(found: list[dict[int, int]]) -> dict[int, list[tuple]]:
    """{stored hash (unsigned): [(content_id, organization_id), ...]} for the hashes in `found`."""
    values = sorted({hash_to_signed(value) for close in found for value in close})
    content = Fingerprint._meta.get_field("content")
    owners: dict[int, list[tuple]] = {}
    for value, content_id, organization_id in _select("phash, content_id, organization_id", Fingerprint, "phash",
                                                      values, pg_type="bigint"):
        owners.setdefault(hash_to_unsigned(value), []).append((content.to_python(content_id), organization_id))
    return owners


def _content_matches(content_ids: list, queries: list[int], *, max_distance: int) -> dict:
    """Every query frame against every fingerprint of these contents, in one query."""
    content = Fingerprint._meta.get_field("content")
    rows = _select("content_id, organization_id, phash", Fingerprint, "content_id",
                   [content.get_db_prep_value(content_id, connection) for content_id in content_ids], pg_type="uuid")
    if not rows:
        return {}
    stored = np.array([row[2] for row in rows], dtype=np.int64).view(np.uint64)
    distances = np.bitwise_count(stored[:, None] ^ np.array(queries, dtype=np.uint64)[None, :])  # rows x frames
    by_content: dict = {}
    for index, (content_id, organization_id, _value) in enumerate(rows):
        by_content.setdefault(content_id, (organization_id, []))[1].append(index)
    matches = {}
    for key, (organization_id, indexes) in by_content.items():
        best = distances[indexes].min(axis=0)  # per query frame
        frames = np.flatnonzero(best <= max_distance)
        if len(frames):
            matches[content.to_python(key)] = {"organization_id": organization_id, "frames": set(frames.tolist()),
                                               "best": int(best[frames].min())}
    return matches


def _select(columns: str, model, column: str, values: list, *, pg_type: str) -> list[tuple]:
    """`SELECT columns FROM model's table WHERE column` is one of `values`, in SQL: the ORM's query
    building would take as long as these reads (a millisecond or less). Callers hold
    dangerously_unscoped, so on a tenant table these are the rows Model.objects.filter(...) returns in
    that scope, and row level security still applies on PostgreSQL."""
    rows: list[tuple] = []
    with _search_cursor() as cursor:
        for chunk in _chunks(values, KEYS_PER_STATEMENT):
            if connection.vendor == "postgresql":
                cursor.execute(f"SELECT {columns} FROM {model._meta.db_table} WHERE {column} = ANY(%s::{pg_type}[])",
                               [chunk])
            else:
                cursor.execute(f"SELECT {columns} FROM {model._meta.db_table} "
                               f"WHERE {column} IN ({', '.join(['%s'] * len(chunk))})", chunk)
            rows += cursor.fetchall()
    return rows


@contextmanager
def _search_cursor() -> Iterator:
    """A Django cursor (logged and wrapped like any other) for the search's reads. On PostgreSQL it binds
    parameters on the server and takes results in binary: Django's own cursors bind on the client, which
    psycopg allows only with text results, and spelling ~57 KB of bucket bytes in hex, then decoding
    them, takes as long as reading them."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    raw.format = psycopg.pq.Format.BINARY
    wrapped = connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
    with wrapped as cursor:
        yield cursor


def _rank(matches: dict, query_count: int, *, min_fraction: float, limit_contents: int) -> list[dict]:
    """The results from {content_id: {"organization_id", "frames" (query indexes), "best"}}."""
    results = []
    for content_id, match in matches.items():
        fraction = len(match["frames"]) / query_count
        if fraction >= min_fraction:
            results.append({
                "content_id": content_id, "organization_id": match["organization_id"],
                "matched_frames": len(match["frames"]), "matched_fraction": round(fraction, 4),
                "best_distance": match["best"],
            })
    results.sort(key=lambda result: (-result["matched_fraction"], result["best_distance"], str(result["content_id"])))
    return results[:limit_contents]
