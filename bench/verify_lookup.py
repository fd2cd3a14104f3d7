"""Fingerprint lookup: the bucket search against a full scan of the same table, in the same run.

    .venv/bin/python bench/verify_lookup.py [--rows 1000000] [--queries 200]
    createdb -h 127.0.0.1 -U postgres -O platform bench_fp
    .venv/bin/python bench/verify_lookup.py --database-url postgres://platform@127.0.0.1:5432/bench_fp

SQLite (a fresh temporary VAR_DIR) by default; `--database-url` runs on a throwaway PostgreSQL database,
which must hold no fingerprints yet (drop and create it again between runs). Inserts `--rows` random
pHashes (one executemany on SQLite; INSERT from unnest(arrays) on PostgreSQL, where row level security
refuses COPY) in 1,000 contents of two organizations, with one
planted neighbour at distance 0..8 for each query, then builds the search buckets from them
(`fingerprint_buckets_rebuild`, what a bulk load runs). Then each query (one frame, Hamming distance <= 8):
  1. `fingerprint_search`, the code the platform runs (57 buckets read by primary key, exact check in
     numpy, then the owners of the hashes that matched);
  2. the baseline: the same question as one SQL statement computing popcount(phash xor query) over every
     row (PostgreSQL: bit_count over a bit(64) cast; SQLite: a branch-free SWAR popcount in SQL, no
     Python callback), i.e. what the database does without the buckets;
  3. for reference, a numpy scan of all hashes held in memory (it needs the whole table in every
     process, so it is not the baseline; printed because it is the fastest scan there is).
Then video queries of 48 frames (36 near-copies of one content's fingerprints, 12 unrelated frames):
the two-stage search (8 spread frames through the buckets, then every frame against the candidates'
fingerprints), every frame through the buckets (`min_fraction=0`), and for a few of them the SQL scan
comparing every row with every frame in one statement.
Prints p50/p95, the ratios, recall of the planted neighbours, agreement with the scan, and the machine.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import machine  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _configure() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="fingerprints inserted")
    parser.add_argument("--queries", type=int, default=200, help="one-frame queries timed")
    parser.add_argument("--scan-queries", type=int, default=0, help="queries timed for the SQL scan (0: all)")
    parser.add_argument("--video-queries", type=int, default=50, help="48-frame queries timed")
    parser.add_argument("--video-scan-queries", type=int, default=2, help="48-frame queries timed for the SQL scan")
    parser.add_argument("--database-url", default="", help="a throwaway PostgreSQL database; SQLite if unset")
    args = parser.parse_args()
    os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="bench-verify-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "SQLITE_PATH"):
        os.environ.pop(name, None)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    return args


ARGS = _configure()

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from config.tenancy import dangerously_unscoped, tenant_scope  # noqa: E402
from rights.fingerprints import fingerprint_buckets_rebuild, fingerprint_search, probe_keys  # noqa: E402
from rights.models import Content, Fingerprint  # noqa: E402
from rights.models.fingerprints import FingerprintBucket  # noqa: E402

MAX_DISTANCE = 8
CONTENTS = 1000
VIDEO_FRAMES = 48
VIDEO_MATCHED = 36  # frames of the query that are near-copies of the content's; the rest are unrelated
COLUMNS = ("organization_id", "content_id", "at_s", "phash")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def machine_and_database() -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            database = f"PostgreSQL {cursor.fetchone()[0]}"
    else:
        import sqlite3

        database = f"SQLite {sqlite3.sqlite_version}"
    return f"{machine()}, {database}"


def flip(values: np.ndarray, distances: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each value with `distance` distinct random bits flipped."""
    out = values.copy()
    for index, distance in enumerate(distances):
        for bit in rng.choice(64, size=int(distance), replace=False):
            out[index] ^= np.uint64(1) << np.uint64(bit)
    return out


def populate(rows: int, rng: np.random.Generator, queries: np.ndarray):
    """Two organizations, CONTENTS contents, `rows` fingerprints; returns (contents, per-row content index,
    hashes, planted row index per query)."""
    from accounts import services
    from accounts.models import User

    owners = [User.objects.create_user(email=f"bench{n}@bench.test", password=None) for n in range(2)]
    organizations = [services.organization_create(name=f"Bench {n}", slug=f"bench-{n}", owner=owners[n])
                     for n in range(2)]
    contents = []
    for index in range(CONTENTS):
        with tenant_scope(organizations[index % 2]):
            contents.append(Content.objects.create(content_id=f"bench{index:06d}", kind="video", source="upload",
                                                   sha256=f"{index:064x}"))
    hashes = rng.integers(0, 1 << 64, size=rows, dtype=np.uint64, endpoint=False)
    owner_index = np.arange(rows) % CONTENTS
    # One planted neighbour per query, at distance 0..8, replacing a random row.
    planted_rows = rng.choice(rows, size=len(queries), replace=False)
    hashes[planted_rows] = flip(queries, np.arange(len(queries)) % (MAX_DISTANCE + 1), rng)

    signed = hashes.view(np.int64)
    content_keys = [content.pk if connection.vendor == "postgresql" else content.pk.hex for content in contents]
    org_ids = [content.organization_id for content in contents]
    table = Fingerprint._meta.db_table
    started = time.perf_counter()
    with dangerously_unscoped():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # sends the unscoped setting that row level security reads
        if connection.vendor == "postgresql":
            # COPY is refused on a table with row level security: INSERT ... SELECT FROM unnest(arrays).
            owner_orgs = np.array(org_ids, dtype=np.int64)[owner_index]
            owner_keys = np.array([str(key) for key in content_keys], dtype=object)[owner_index]
            at_s = (np.arange(rows) // CONTENTS).astype(np.float64)
            sql = (f"INSERT INTO {table} ({', '.join(COLUMNS)}) SELECT * FROM unnest(%s::bigint[], %s::uuid[], "
                   "%s::float8[], %s::bigint[])")
            with connection.cursor() as cursor:
                for start in range(0, rows, 100_000):
                    part = slice(start, start + 100_000)
                    cursor.execute(sql, [owner_orgs[part].tolist(), owner_keys[part].tolist(), at_s[part].tolist(),
                                         signed[part].tolist()])
        else:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?)",
                    ((org_ids[owner_index[i]], content_keys[owner_index[i]], float(i // CONTENTS), int(signed[i]))
                     for i in range(rows)),
                )
    print(f"inserted {rows:,} fingerprints in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    buckets = fingerprint_buckets_rebuild()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for name in (table, FingerprintBucket._meta.db_table):
                cursor.execute(f"VACUUM ANALYZE {name}")
        else:
            cursor.execute("ANALYZE")
    print(f"built {buckets:,} search buckets in {time.perf_counter() - started:.1f} s")
    return contents, owner_index, hashes, planted_rows


# The baseline: popcount(phash xor q) <= 8 over every row, in the database's own SQL.
POSTGRES_SCAN = """
    SELECT content_id, min(bit_count((phash # %(q)s)::bit(64))) FROM {table}
    WHERE bit_count((phash # %(q)s)::bit(64)) <= %(r)s GROUP BY content_id
"""
# SQLite has no xor or popcount: a SWAR popcount in SQL, one step per subquery. `LIMIT -1 OFFSET 0` keeps
# SQLite from flattening the steps into one expression that repeats the xor hundreds of times. Bit 63 is
# counted apart (`top`): with it in, the first step's sum can reach 2**63, and SQLite turns an integer
# overflow into a float (this scan used to miss a neighbour differing in both of the top two bits).
SQLITE_SCAN = """
    SELECT content_id, min(d) FROM (
      SELECT content_id, ((s3 + (s3 >> 8) + (s3 >> 16) + (s3 >> 24) + (s3 >> 32) + (s3 >> 40) + (s3 >> 48)
                           + (s3 >> 56)) & 127) + top AS d FROM (
        SELECT content_id, top, (s2 & 1085102592571150095) + ((s2 >> 4) & 1085102592571150095) AS s3 FROM (
          SELECT content_id, top, (s1 & 3689348814741910323) + ((s1 >> 2) & 3689348814741910323) AS s2 FROM (
            SELECT content_id, x < 0 AS top, (x & 6148914691236517205)
                   + (((x & 9223372036854775807) >> 1) & 6148914691236517205) AS s1 FROM (
              SELECT content_id, (phash | %(q)s) & ~(phash & %(q)s) AS x FROM {table} LIMIT -1 OFFSET 0
            ) LIMIT -1 OFFSET 0
          ) LIMIT -1 OFFSET 0
        ) LIMIT -1 OFFSET 0
      ) LIMIT -1 OFFSET 0
    ) WHERE d <= %(r)s GROUP BY content_id
"""


# A video query on PostgreSQL: every row against every frame in one pass over the table, (content, frame)
# pairs. SQLite runs SQLITE_SCAN once per frame (one pass per frame costs it no more: it scans on one core).
POSTGRES_SCAN_FRAMES = """
    SELECT DISTINCT content_id, q.i FROM {table} CROSS JOIN unnest(%(qs)s::bigint[]) WITH ORDINALITY AS q(h, i)
    WHERE bit_count((phash # q.h)::bit(64)) <= %(r)s
"""
def scan_sql_frames(frames: list[int]) -> dict:
    """{content key: number of frames with a fingerprint of it within the distance}, by the SQL scan."""
    counts: dict = {}
    if connection.vendor != "postgresql":
        for value in dict.fromkeys(frames):
            for key in scan_sql(value):
                counts[key] = counts.get(key, 0) + 1
        return counts
    signed = [value - (1 << 64) if value >= 1 << 63 else value for value in dict.fromkeys(frames)]
    with dangerously_unscoped(), connection.cursor() as cursor:
        cursor.execute(POSTGRES_SCAN_FRAMES.format(table=Fingerprint._meta.db_table), {"qs": signed, "r": MAX_DISTANCE})
        for content_id, _frame in cursor.fetchall():
            key = str(content_id).replace("-", "")
            counts[key] = counts.get(key, 0) + 1
    return counts


def scan_sql(query: int) -> set:
    table = Fingerprint._meta.db_table
    if connection.vendor == "postgresql":
        sql = POSTGRES_SCAN.format(table=table)
    else:
        sql = SQLITE_SCAN.format(table=table)
    signed = query - (1 << 64) if query >= 1 << 63 else query
    with dangerously_unscoped(), connection.cursor() as cursor:
        cursor.execute(sql, {"q": signed, "r": MAX_DISTANCE})
        return {str(row[0]).replace("-", "") for row in cursor.fetchall()}


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return (time.perf_counter() - started) * 1000, result


def summary(name: str, values: list[float]) -> str:
    return f"{name:<44} p50 {statistics.median(values):9.2f} ms   p95 {percentile(values, 0.95):9.2f} ms"


def main() -> None:
    call_command("migrate", verbosity=0)
    with dangerously_unscoped():
        if Fingerprint.objects.exists():
            sys.exit("the database already holds fingerprints: point --database-url at a fresh throwaway database")
    rng = np.random.default_rng(20240601)
    queries = rng.integers(0, 1 << 64, size=ARGS.queries, dtype=np.uint64)
    contents, owner_index, hashes, planted_rows = populate(ARGS.rows, rng, queries)
    print(f"machine: {machine_and_database()}")
    query_ints = [int(value) for value in queries]

    with dangerously_unscoped():
        candidates = [sum(len(packed) // 8 for packed in FingerprintBucket.objects.filter(
            key__in=probe_keys(value, max_distance=MAX_DISTANCE)).values_list("hashes", flat=True))
            for value in query_ints[:20]]
        plan = FingerprintBucket.objects.filter(key__in=probe_keys(query_ints[0], max_distance=MAX_DISTANCE)).explain()
    reads = ("primary key" if re.search(r"rights_fingerprintbucket_pkey|USING INTEGER PRIMARY KEY|USING PRIMARY KEY"
                                        r"|USING INDEX sqlite_autoindex_rights_fingerprintbucket", plan)
             else "no index")
    scans = "a full scan" if re.search(r"Seq Scan|SCAN rights_fingerprintbucket", plan) else "no full scan"
    mean = statistics.mean(candidates)
    print(f"buckets per one-frame query: {len(probe_keys(query_ints[0], max_distance=MAX_DISTANCE))}, holding "
          f"{mean:.0f} candidate hashes on average ({mean / ARGS.rows:.3%} of {ARGS.rows:,}); "
          f"plan: read by {reads}; {scans}")

    for value in query_ints[:5]:  # warm the caches and the connection for both sides
        fingerprint_search([value])
        scan_sql(value)

    indexed_ms, found = [], []
    for value in query_ints:
        elapsed, results = timed(fingerprint_search, [value], max_distance=MAX_DISTANCE, limit_contents=CONTENTS)
        indexed_ms.append(elapsed)
        found.append({result["content_id"].hex for result in results})
    recall = statistics.mean(
        contents[owner_index[row]].pk.hex in found[index] for index, row in enumerate(planted_rows))

    scan_count = ARGS.scan_queries or len(query_ints)
    scan_ms, agree = [], 0
    for index, value in enumerate(query_ints[:scan_count]):
        elapsed, expected = timed(scan_sql, value)
        scan_ms.append(elapsed)
        agree += expected == found[index]

    loading, (all_hashes, all_owners) = timed(load_all)
    memory_ms = []
    for value in query_ints:
        elapsed, _hits = timed(scan_numpy, all_hashes, all_owners, value)
        memory_ms.append(elapsed)

    videos = []
    for _ in range(ARGS.video_queries):
        owner = int(rng.integers(CONTENTS))
        rows = rng.choice(np.flatnonzero(owner_index == owner), size=VIDEO_MATCHED, replace=False)
        frames = np.concatenate([flip(hashes[rows], rng.integers(0, 5, size=VIDEO_MATCHED), rng),
                                 rng.integers(0, 1 << 64, size=VIDEO_FRAMES - VIDEO_MATCHED, dtype=np.uint64)])
        videos.append((owner, [int(value) for value in rng.permutation(frames)]))
    for _owner, frames in videos[:3]:  # warm
        fingerprint_search(frames)
        fingerprint_search(frames, min_fraction=0.0)
    video_ms, every_ms, video_right, video_same = [], [], 0, 0
    for owner, frames in videos:
        elapsed, results = timed(fingerprint_search, frames)
        video_ms.append(elapsed)
        elapsed, every = timed(fingerprint_search, frames, min_fraction=0.0)
        every_ms.append(elapsed)
        video_same += results == [result for result in every if result["matched_fraction"] >= 0.25]
        video_right += bool(results) and results[0]["content_id"] == contents[owner].pk \
            and results[0]["matched_frames"] >= VIDEO_MATCHED
    video_scan_ms, video_scan_agree = [], 0
    for owner, frames in videos[:ARGS.video_scan_queries]:
        elapsed, counts = timed(scan_sql_frames, frames)
        video_scan_ms.append(elapsed)
        expected = {key: count for key, count in counts.items() if count / len(frames) >= 0.25}
        found = {result["content_id"].hex: result["matched_frames"] for result in fingerprint_search(frames)}
        video_scan_agree += expected == found

    print()
    print(summary(f"indexed fingerprint_search ({len(indexed_ms)} queries)", indexed_ms))
    print(summary(f"baseline: SQL full scan ({len(scan_ms)} queries)", scan_ms))
    print(f"ratio scan/indexed: p50 {statistics.median(scan_ms) / statistics.median(indexed_ms):.0f}x, "
          f"p95 {percentile(scan_ms, 0.95) / percentile(indexed_ms, 0.95):.0f}x   "
          f"(target: p95 < 50 ms and >= 100x)")
    print(f"recall of planted neighbours (distance 0..8): {recall:.3f}; "
          f"same contents as the scan: {agree}/{len(scan_ms)} queries")
    print(summary(f"reference: numpy scan in memory ({len(memory_ms)})", memory_ms)
          + f"   (after {loading / 1000:.1f} s loading all rows)")
    print()
    print(summary(f"{VIDEO_FRAMES}-frame queries, two-stage ({len(video_ms)})", video_ms)
          + f"   right content first, {VIDEO_MATCHED}+ frames: {video_right}/{len(video_ms)}")
    print(summary(f"{VIDEO_FRAMES}-frame queries, every frame indexed ({len(every_ms)})", every_ms)
          + f"   same results as two-stage: {video_same}/{len(every_ms)}")
    line = (f"ratio every-frame/two-stage: p50 {statistics.median(every_ms) / statistics.median(video_ms):.1f}x, "
            f"p95 {percentile(every_ms, 0.95) / percentile(video_ms, 0.95):.1f}x")
    if video_scan_ms:
        print(summary(f"{VIDEO_FRAMES}-frame queries, SQL full scan ({len(video_scan_ms)})", video_scan_ms)
              + f"   same contents and frame counts: {video_scan_agree}/{len(video_scan_ms)}")
        line += (f"; scan/two-stage: p50 {statistics.median(video_scan_ms) / statistics.median(video_ms):.0f}x, "
                 f"p95 {percentile(video_scan_ms, 0.95) / percentile(video_ms, 0.95):.0f}x")
    print(line)


def load_all():
    with dangerously_unscoped():
        pairs = list(Fingerprint.objects.values_list("phash", "content_id").iterator(chunk_size=50_000))
    all_hashes = np.fromiter((pair[0] for pair in pairs), dtype=np.int64, count=len(pairs)).view(np.uint64)
    return all_hashes, [pair[1] for pair in pairs]


def scan_numpy(all_hashes: np.ndarray, all_owners: list, query: int) -> set:
    hits = np.flatnonzero(np.bitwise_count(all_hashes ^ np.uint64(query)) <= MAX_DISTANCE)
    return {all_owners[index] for index in hits}


if __name__ == "__main__":
    main()
