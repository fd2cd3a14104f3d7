"""Perceptual fingerprints: pHash of frames sampled once a second and at scene cuts, stored with four
16-bit bands, and a global Hamming-distance search that probes the band indexes instead of scanning.

Search is multi-index hashing. Split a 64-bit hash into m = 4 bands and write r = m*q + a (0 <= a < m).
If two hashes differ in at most r bits, either one of the first a + 1 bands differs in at most q bits or
some band differs in at most q - 1 bits (otherwise the band distances would add up to more than r). So
the search looks up bands 0..a within radius q and the others within radius q - 1; for r = 8 that is
137 values in band 0 and 17 in each of the others, 188 index probes per query hash, and the exact
distance is then checked in numpy on the candidates (about 0.3% of the rows at a million). Each band index
also holds phash and organization_id, so the lookup reads only the indexes (index-only scans on
PostgreSQL once vacuum has marked the table's pages visible; covering indexes on SQLite).
"""
from __future__ import annotations

import re
import subprocess
from itertools import combinations
from math import comb
from pathlib import Path

import imagehash
import numpy as np
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from PIL import Image

from accounts.tenancy import UNSCOPED, ScopeError, current_scope, dangerously_unscoped
from generation.media import MediaError, ffmpeg_exe
from rights.models import Content, Fingerprint

BANDS = 4
BAND_BITS = 16
BAND_MASK = (1 << BAND_BITS) - 1
HASH_MASK = (1 << 64) - 1

FRAME_SIZE = 128  # frames are decoded small: pHash looks at a 32x32 grey thumbnail anyway
SAMPLE_INTERVAL_S = 1.0
SCENE_THRESHOLD = 0.3
FRAMES_MAX = 600
FLAT_FRAME_STD = 3.0  # a near-uniform frame (black, fade) hashes like every other one: it identifies nothing
SEARCH_HASHES_MAX = 32  # a query is cut to this many frames, evenly spaced: the cost grows with each one
PROBES_PER_STATEMENT = 16000  # band values in one candidate query (SQLite allows 32,766 parameters)
IDS_PER_STATEMENT = 10000  # matched hashes looked up at once
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
    """The four 16-bit bands of a hash (signed or unsigned), band 0 the most significant."""
    value = hash_to_unsigned(value)
    return tuple((value >> (BAND_BITS * (BANDS - 1 - band))) & BAND_MASK for band in range(BANDS))


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
        completed = subprocess.run(args, capture_output=True, timeout=DECODE_TIMEOUT_S, stdin=subprocess.DEVNULL)
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
    completed = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                               timeout=60, stdin=subprocess.DEVNULL)
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
    """Replace the content's fingerprints with `hashes` ((at_s, pHash) pairs); returns how many.

    Runs in the content's tenant scope (or unscoped system work). bulk_create skips the model's save(),
    which is where the scope is checked, so the check is made here."""
    scope = current_scope()
    if scope is None:
        raise ScopeError("fingerprints_store was called outside a tenant scope")
    if scope != UNSCOPED and scope != content.organization_id:
        raise ScopeError("fingerprints_store was called for another organization's content")
    rows = []
    for at_s, value in hashes:
        bands = hash_bands(value)
        rows.append(Fingerprint(
            organization_id=content.organization_id, content_id=content.pk, at_s=float(at_s),
            phash=hash_to_signed(value), band0=bands[0], band1=bands[1], band2=bands[2], band3=bands[3],
        ))
    with transaction.atomic():
        Fingerprint.objects.filter(content_id=content.pk).delete()
        Fingerprint.objects.bulk_create(rows, batch_size=2000)
        Content.objects.filter(pk=content.pk).update(fingerprint_count=len(rows))
    content.fingerprint_count = len(rows)
    return len(rows)


# --- search ---------------------------------------------------------------------------------------

def _neighbours(value: int, radius: int) -> list[int]:
    """Every 16-bit value within `radius` bits of `value`."""
    found = [value]
    for distance in range(1, radius + 1):
        for bits in combinations(range(BAND_BITS), distance):
            flip = 0
            for bit in bits:
                flip |= 1 << bit
            found.append(value ^ flip)
    return found


def band_radii(max_distance: int) -> list[int]:
    """The probe radius of each band for a search within `max_distance` (-1: that band is not probed)."""
    q, a = divmod(max_distance, BANDS)
    return [q if band <= a else q - 1 for band in range(BANDS)]


def candidates_queryset(hashes: list[int], *, max_distance: int) -> QuerySet:
    """Stored hashes (signed) sharing a probed band value with any of `hashes`: a superset of those
    within `max_distance`. One SELECT per probed band, joined with UNION ALL (a hash may come back more
    than once), so each reads only its band's index: the indexes hold (band, phash, organization_id),
    the last for the row level security check, so no table row is read. Callers hold an explicit scope
    (search is global)."""
    probes: list[set[int]] = [set() for _ in range(BANDS)]
    radii = band_radii(max_distance)
    for value in hashes:
        for band, part in enumerate(hash_bands(value)):
            if radii[band] >= 0:
                probes[band].update(_neighbours(part, radii[band]))
    selects = [
        Fingerprint.objects.filter(**{f"band{band}__in": sorted(values)}).values_list("phash", flat=True)
        for band, values in enumerate(probes) if values
    ]
    return selects[0].union(*selects[1:], all=True) if len(selects) > 1 else selects[0]


def _query_sample(hashes: list[int]) -> list[int]:
    unique = list(dict.fromkeys(hash_to_unsigned(value) for value in hashes))
    if len(unique) <= SEARCH_HASHES_MAX:
        return unique
    step = len(unique) / SEARCH_HASHES_MAX
    return [unique[int(index * step)] for index in range(SEARCH_HASHES_MAX)]


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
    `best_distance`. Best first; at most `limit_contents`. Two queries at the default distance (the
    candidates, then the owners of the hashes that matched), whatever the size of the table.
    """
    if not 0 <= max_distance <= 15:
        raise ValueError("max_distance must be between 0 and 15")
    queries = _query_sample(hashes)
    if not queries:
        return []
    if connection.vendor == "postgresql":
        return _rank(_postgres_matches(queries, max_distance=max_distance), len(queries), min_fraction=min_fraction,
                     limit_contents=limit_contents)
    probes_per_hash = sum(sum(comb(BAND_BITS, k) for k in range(radius + 1)) for radius in band_radii(max_distance))
    with dangerously_unscoped():
        found = []
        for group in _chunks(queries, max(1, PROBES_PER_STATEMENT // probes_per_hash)):
            found += candidates_queryset(group, max_distance=max_distance)
        stored = np.unique(np.array(found, dtype=np.int64)).view(np.uint64)
        wanted = np.array(queries, dtype=np.uint64)
        distances = np.bitwise_count(stored[:, None] ^ wanted[None, :])  # candidates x query frames
        close = distances <= max_distance
        hit = np.flatnonzero(close.any(axis=1))
        if not len(hit):
            return []
        # The owners of the hashes that matched, read through the band 0 index.
        owners: dict[int, list[tuple]] = {}
        for chunk in _chunks(hit.tolist(), IDS_PER_STATEMENT):
            values = [hash_to_signed(int(stored[index])) for index in chunk]
            for value, content_id, organization_id in Fingerprint.objects.filter(
                    band0__in={hash_bands(value)[0] for value in values}, phash__in=values).values_list(
                    "phash", "content_id", "organization_id"):
                owners.setdefault(hash_to_unsigned(value), []).append((content_id, organization_id))
    matches: dict = {}
    for index in hit:
        frames = np.flatnonzero(close[index]).tolist()
        best = int(distances[index][close[index]].min())
        for content_id, organization_id in owners.get(int(stored[index]), []):
            match = matches.setdefault(content_id, {"organization_id": organization_id, "frames": set(), "best": 64})
            match["frames"].update(frames)
            match["best"] = min(match["best"], best)
    return _rank(matches, len(queries), min_fraction=min_fraction, limit_contents=limit_contents)


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


# --- search on PostgreSQL -------------------------------------------------------------------------
# One statement per search. The probed band values go in as int arrays (`band_i = ANY(%s)`, one index-only
# scan per band, joined with UNION ALL), the exact distance is checked in SQL (bit_count over a bit(64)
# cast of the xor), and only the hashes that matched are looked up again, one band0 index probe each, for
# their contents. A LATERAL subquery with OFFSET 0 keeps that last lookup a parametrized index scan, and
# its band0 value is computed beforehand (in the materialized CTE): an expression there (a cast that can
# fail is not leakproof) would not be allowed into the index condition under row level security. With
# several query hashes each candidate is joined back to the probes that found it (band, value -> query
# hash), so it is compared only with those query hashes rather than with all of them.

_PG_TABLE = Fingerprint._meta.db_table
_PG_OWNERS = f"""
SELECT m.h, m.d, f.content_id, f.organization_id FROM m CROSS JOIN LATERAL (
    SELECT content_id, organization_id FROM {_PG_TABLE} WHERE band0 = m.b0 AND phash = m.phash OFFSET 0) f"""


def postgres_search_sql(hashes: list[int], *, max_distance: int) -> tuple[str, dict]:
    """The one PostgreSQL statement for `hashes` (unsigned) and its parameters; it returns rows of
    (query hash as signed int64, distance, content_id, organization_id), one per stored fingerprint within
    `max_distance` of a query hash and query hash it matched (a fingerprint repeated in a content may
    come back more than once)."""
    radii = band_radii(max_distance)
    signed = [hash_to_signed(value) for value in hashes]
    params: dict = {"r": max_distance}
    probes: list[list[tuple[int, int]]] = [[] for _ in range(BANDS)]  # (value, signed query hash) per band
    for value, query in zip(hashes, signed):
        for band, part in enumerate(hash_bands(value)):
            if radii[band] >= 0:
                probes[band] += [(neighbour, query) for neighbour in _neighbours(part, radii[band])]
    branches = []
    for band, found in enumerate(probes):
        if found:
            params[f"p{band}"] = sorted({value for value, _query in found})
            branches.append(f"SELECT {band} AS b, band{band} AS v, phash FROM {_PG_TABLE} "
                            f"WHERE band{band} = ANY(%(p{band})s::int[])")
    candidates = " UNION ALL ".join(branches)
    if len(hashes) == 1:
        params["h"] = signed[0]
        sql = f"""WITH m AS MATERIALIZED (
    SELECT DISTINCT c.phash, %(h)s::bigint AS h, bit_count((c.phash # %(h)s::bigint)::bit(64))::int AS d,
           ((c.phash >> 48) & 65535)::int AS b0
    FROM ({candidates}) c WHERE bit_count((c.phash # %(h)s::bigint)::bit(64)) <= %(r)s)""" + _PG_OWNERS
    else:
        params["pb"] = [band for band, found in enumerate(probes) for _ in found]
        params["pv"] = [value for found in probes for value, _query in found]
        params["ph"] = [query for found in probes for _value, query in found]
        sql = f"""WITH p AS MATERIALIZED (
    SELECT * FROM unnest(%(pb)s::int[], %(pv)s::int[], %(ph)s::bigint[]) AS p(b, v, h)),
m AS MATERIALIZED (
    SELECT DISTINCT c.phash, p.h, bit_count((c.phash # p.h)::bit(64))::int AS d, ((c.phash >> 48) & 65535)::int AS b0
    FROM ({candidates}) c JOIN p ON p.b = c.b AND p.v = c.v WHERE bit_count((c.phash # p.h)::bit(64)) <= %(r)s)""" \
            + _PG_OWNERS
    return sql, params


def _postgres_matches(queries: list[int], *, max_distance: int) -> dict:
    index_of = {hash_to_signed(value): index for index, value in enumerate(queries)}
    sql, params = postgres_search_sql(queries, max_distance=max_distance)
    with dangerously_unscoped(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    matches: dict = {}
    for query, distance, content_id, organization_id in rows:
        match = matches.setdefault(content_id, {"organization_id": organization_id, "frames": set(), "best": 64})
        match["frames"].add(index_of[query])
        match["best"] = min(match["best"], distance)
    return matches
