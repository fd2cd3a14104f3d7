"""Files on local disk and in S3: the same tests for both backends. The S3 tests run against a real
S3-compatible server on loopback (SeaweedFS, config/tests/s3server.py) that checks signatures and
expiry, so a link that works here past its lifetime would fail the test."""
from __future__ import annotations

import io
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.audit import Actor
from config.media import ffmpeg_exe
from config.storage import default_storage_config
from config.tenancy import dangerously_unscoped, tenant_scope
from config.tests.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server_start

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    server = s3_server_start(tmp_path_factory.mktemp("s3server"))
    yield server
    server.stop()


@dataclass
class Store:
    """The backend under test, and a look at what it holds that does not go through the platform."""

    kind: str
    media_root: Path
    server: S3Server | None = None
    prefix: str = ""

    def has(self, name: str) -> bool:
        if self.server is None:
            return (self.media_root / name).is_file()
        try:
            self.server.client().head_object(Bucket=self.server.bucket, Key=f"{self.prefix}/{name}")
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def read(self, name: str) -> bytes:
        if self.server is None:
            return (self.media_root / name).read_bytes()
        return self.server.client().get_object(Bucket=self.server.bucket, Key=f"{self.prefix}/{name}")["Body"].read()

    def fetch(self, client, path: str, range_header: str = "") -> tuple[int, bytes, dict]:
        """A download as a client would do it: local files come in the answer; S3 answers a redirect to
        a signed link, followed here against the S3 server itself."""
        extra = {"HTTP_RANGE": range_header} if range_header else {}
        response = client.get(path, **extra)
        if self.server is None:
            assert response.status_code in (200, 206), (response.status_code, path)
            return response.status_code, b"".join(response.streaming_content), dict(response.headers)
        assert response.status_code == 302, (response.status_code, path)
        assert response["Cache-Control"] == "private, no-store"
        location = response["Location"]
        assert location.startswith(self.server.endpoint_url + "/") and "X-Amz-Signature=" in location
        request = urllib.request.Request(location, headers={"Range": range_header} if range_header else {})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read(), dict(answer.headers)


@pytest.fixture(params=["local", "s3"])
def store(request, settings) -> Store:
    if request.param == "local":
        settings.STORAGE_BACKEND = "local"
        settings.STORAGES = {**settings.STORAGES, "default": default_storage_config(backend="local")}
        return Store("local", Path(settings.MEDIA_ROOT))
    server = request.getfixturevalue("s3_server")
    prefix = f"test-{uuid.uuid4().hex[:12]}"  # one folder per test in the shared bucket
    settings.STORAGE_BACKEND, settings.S3_BUCKET = "s3", server.bucket
    settings.STORAGES = {**settings.STORAGES, "default": default_storage_config(
        backend="s3", bucket=server.bucket, endpoint_url=server.endpoint_url, region=REGION,
        access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, prefix=prefix)}
    return Store("s3", Path(settings.MEDIA_ROOT), server, prefix)


def _png(tmp_path) -> bytes:
    path = tmp_path / "poster.png"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "mandelbrot=size=320x240",
                    "-frames:v", "1", str(path)], check=True)
    return path.read_bytes()


def _upload(tenant, tmp_path):
    from rights.models import Content

    response = tenant.key_client().post("/api/v1/assets", {"file": io.BytesIO(_png(tmp_path)), "title": "Poster"},
                                        format="multipart")
    assert response.status_code == 201, response.content[:500]
    with tenant_scope(tenant.organization):
        return Content.objects.get(pk=response.json()["id"])


def test_health_reports_the_storage_backend(store, client, db):
    checks = client.get("/api/v1/health").json()["checks"]
    assert checks["storage"]["status"] == "ok" and checks["storage"]["backend"] == store.kind


def test_uploaded_asset_is_stored_privately_and_downloads_for_its_studio_only(store, tenant_a, tenant_b, tmp_path):
    content = _upload(tenant_a, tmp_path)
    assert store.has(content.original.name) and store.has(content.protected.name)
    stored = store.read(content.protected.name)
    assert stored.startswith(PNG_MAGIC)
    if store.server is not None:  # private objects: an unsigned read is refused by the server
        unsigned = f"{store.server.endpoint_url}/{store.server.bucket}/{store.prefix}/{content.protected.name}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unsigned, timeout=10)
        assert refused.value.code == 403

    page = f"/assets/{content.pk}/?file=protected"
    status, body, headers = store.fetch(tenant_a.client("viewer"), page)
    assert status == 200 and body == stored
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == f'inline; filename="{content.content_id}.png"'
    saved = store.fetch(tenant_a.client("viewer"), page + "&download=1")[2]  # the portal's download button
    assert saved["Content-Disposition"] == f'attachment; filename="{content.content_id}.png"'
    status, part, headers = store.fetch(tenant_a.client("viewer"), page, range_header="bytes=0-7")
    assert status == 206 and part == PNG_MAGIC and headers["Content-Range"] == f"bytes 0-7/{len(stored)}"

    other = tenant_b.client().get(page)
    assert other.status_code == 404 and "Location" not in other
    signed_out = APIClient().get(page)
    assert signed_out.status_code == 302 and signed_out["Location"].startswith("/login")


def test_download_links_need_access_and_expire(store, tenant_a, tmp_path, settings):
    content = _upload(tenant_a, tmp_path)
    page = f"/assets/{content.pk}/?file=protected"
    assert APIClient().get(page)["Location"].startswith("/login")  # signed out: no file, no link
    if store.server is None:
        # Local files have no link of their own: media is not served, only the checked view streams it.
        assert APIClient().get(f"/media/{content.protected.name}").status_code == 404
        assert tenant_a.client().get(page).status_code == 200
        return
    settings.S3_SIGNED_URL_EXPIRY_S = 2
    location = tenant_a.client().get(page)["Location"]
    assert "X-Amz-Expires=2&" in location
    with urllib.request.urlopen(location, timeout=10) as answer:
        assert answer.read() == store.read(content.protected.name)
    forged = location.replace("X-Amz-Signature=", "X-Amz-Signature=0")[:-1]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)
    assert refused.value.code == 403 and b"SignatureDoesNotMatch" in refused.value.read()
    # Signed for the address browsers use, when it is not the one the platform uses.
    settings.S3_PUBLIC_ENDPOINT_URL = store.server.endpoint_url.replace("127.0.0.1", "localhost")
    public = tenant_a.client().get(page)["Location"]
    assert public.startswith(settings.S3_PUBLIC_ENDPOINT_URL + f"/{store.server.bucket}/{store.prefix}/")
    with urllib.request.urlopen(public, timeout=10) as answer:
        assert answer.read() == store.read(content.protected.name)
    time.sleep(3.2)  # past the 2 s lifetime (the signing time has one-second steps)
    for link in (location, public):
        with pytest.raises(urllib.error.HTTPError) as expired:
            urllib.request.urlopen(link, timeout=10)
        assert expired.value.code == 403 and b"expired" in expired.value.read()


def _awaiting_approval_job(tenant, run_commits):
    from generation import services
    from generation.queue.worker import run_until_idle
    from projects.templates import template_create

    options = {"duration_s": 5, "resolution": "480p", "shots": 2}
    project = tenant.project("Storage")
    with tenant_scope(tenant.organization):
        template = template_create(organization=tenant.organization, name="Approval", description="",
                                   settings={**options, "approval_required": True}, actor=Actor(user=tenant.owner))
        job, _ = run_commits(lambda: services.job_create(
            organization=tenant.organization, actor=Actor(user=tenant.owner), project_id=project.pk,
            topic="Paper boats on a rainy canal", options=options, template_id=template.pk))
    while run_commits(run_until_idle):
        pass
    return job


def _steps(tenant, job) -> dict:
    from generation.models import Step

    with tenant_scope(tenant.organization):
        return {(s.stage, s.shot): s for s in Step.objects.filter(job=job).select_related("artifact")}


def test_cleanup_deletes_old_frames_and_clips_keeps_final_outputs_and_a_retry_recomputes_them(
        store, tenant_a, tenant_b, run_commits, settings):
    from generation import services
    from generation.models import Artifact, Job, Step
    from generation.queue.worker import run_until_idle, sweep
    from generation.retention import artifacts_cleanup

    job = _awaiting_approval_job(tenant_a, run_commits)
    steps = _steps(tenant_a, job)
    assert steps[("compose", 0)].status == "succeeded"
    intermediate = {key: steps[key].artifact for key in [("frame", 1), ("frame", 2), ("clip", 1), ("clip", 2)]}
    video = steps[("compose", 0)].artifact
    with tenant_scope(tenant_a.organization):
        thumbnail = Artifact.objects.get(pk=video.data["thumbnail_artifact"])
    final = [video, thumbnail]
    assert all(store.has(a.file.name) for a in [*intermediate.values(), *final])

    api = tenant_a.key_client()
    base = f"/api/v1/jobs/{job.pk}"
    status, video_bytes, _ = store.fetch(api, f"{base}/video")
    assert status == 200 and video_bytes[4:8] == b"ftyp" and video_bytes == store.read(video.file.name)
    status, part, headers = store.fetch(api, f"{base}/video", range_header="bytes=100-199")
    assert status == 206 and part == video_bytes[100:200]
    assert store.fetch(api, f"{base}/thumbnail")[1] == store.read(thumbnail.file.name)
    assert store.fetch(api, f"{base}/shots/1/frame")[1].startswith(PNG_MAGIC)
    assert APIClient().get(f"{base}/video").status_code == 401
    other = tenant_b.key_client().get(f"{base}/video")
    assert other.status_code == 404 and "Location" not in other

    # Everything is 40 days old now; the job awaiting approval still needs all of it.
    long_ago = timezone.now() - timedelta(days=40)
    with dangerously_unscoped():
        Artifact.objects.filter(pk__in=[a.pk for a in [*intermediate.values(), *final]]).update(created_at=long_ago)
        Step.objects.filter(job=job).update(finished_at=long_ago)
    assert artifacts_cleanup(older_than_days=30).artifacts == 0

    with tenant_scope(tenant_a.organization):
        run_commits(lambda: services.job_cancel(job=Job.objects.get(pk=job.pk), actor=Actor(user=tenant_a.owner)))
    out = io.StringIO()
    call_command("cleanup_artifacts", "--dry-run", stdout=out)
    size = sum(a.size for a in intermediate.values())
    assert out.getvalue().startswith("would delete 4 artifacts unused for 30 days") and f"({size} bytes)" in out.getvalue()
    assert artifacts_cleanup(older_than_days=30, dry_run=True, limit=3).artifacts == 3  # the sweep's cap
    assert all(store.has(a.file.name) for a in intermediate.values())

    settings.ARTIFACT_RETENTION_DAYS = 30
    assert run_commits(sweep)["artifacts_deleted"] == 4
    assert sweep()["artifacts_deleted"] == 0  # once an hour
    assert not any(store.has(a.file.name) for a in intermediate.values())
    assert all(store.has(a.file.name) for a in final)
    assert store.fetch(api, f"{base}/video")[1] == video_bytes  # the final video stays downloadable
    assert api.get(f"{base}/shots/1/frame").status_code == 404
    with dangerously_unscoped():
        assert not Artifact.objects.filter(pk__in=[a.pk for a in intermediate.values()]).exists()
    steps = _steps(tenant_a, job)
    assert all(steps[key].artifact is None and steps[key].status == "blocked" for key in intermediate)

    # A retry makes the deleted frames and clips again rather than pointing at missing files.
    with tenant_scope(tenant_a.organization):
        run_commits(lambda: services.job_retry(job=Job.objects.get(pk=job.pk), actor=Actor(user=tenant_a.owner)))
    while run_commits(run_until_idle):
        pass
    steps = _steps(tenant_a, job)
    assert steps[("compose", 0)].artifact_id == video.pk
    for key in intermediate:
        assert steps[key].status == "succeeded" and steps[key].runs == 2 and not steps[key].reused
        assert store.has(steps[key].artifact.file.name)
    assert store.fetch(api, f"{base}/shots/1/frame")[1].startswith(PNG_MAGIC)
    with tenant_scope(tenant_a.organization):
        assert Job.objects.get(pk=job.pk).status == "awaiting_approval"

    # A deleted job's files, final ones included, are no one's any more: they go too (once old).
    remade = [steps[key].artifact for key in intermediate]
    with dangerously_unscoped():
        Artifact.objects.filter(pk__in=[a.pk for a in [*remade, *final]]).update(created_at=long_ago)
        Artifact.objects.filter(pk=thumbnail.pk).update(created_at=long_ago - timedelta(days=1))  # listed first
    assert api.delete(f"/api/v1/projects/{job.project_id}").status_code == 204
    # Cut short by the sweep's cap: a video that stays still has its thumbnail (it goes after the video).
    first = run_commits(lambda: artifacts_cleanup(older_than_days=30, limit=1)).artifacts
    with dangerously_unscoped():
        assert store.has(thumbnail.file.name) or not Artifact.objects.filter(pk=video.pk).exists()
    assert first + run_commits(lambda: artifacts_cleanup(older_than_days=30)).artifacts == 6
    assert not any(store.has(a.file.name) for a in [*remade, *final])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_cleanup_keeps_an_artifact_a_step_took_while_the_cleanup_waited_for_its_lock(tenant_a):
    """The race of a reuse with the cleanup, played out on two PostgreSQL connections: a running job's
    step takes an old frame of a finished job (job_advance's reuse by digest) and holds the row until it
    commits; the cleanup, which listed that frame as unused before the commit, must keep it."""
    import threading

    from django.core.files.base import ContentFile
    from django.db import connection, transaction

    from generation import services
    from generation.models import Artifact, Job, Step
    from generation.retention import _artifact_delete

    long_ago = timezone.now() - timedelta(days=40)
    with tenant_scope(tenant_a.organization):
        project = tenant_a.project("Race")
        finished, running = (services.job_create(
            organization=tenant_a.organization, actor=Actor(user=tenant_a.owner), project_id=project.pk,
            topic=topic, options={"duration_s": 5, "shots": 2})[0] for topic in ("Old boats", "New boats"))
        frame = Artifact(organization=tenant_a.organization, digest="f" * 64, kind="image", content_hash="0" * 64,
                         size=8, created_at=long_ago)
        frame.file.save("frame-1.png", ContentFile(PNG_MAGIC), save=False)
        frame.save()
        Job.objects.filter(pk=finished.pk).update(status="completed")
        Step.objects.filter(job=finished, stage="frame", shot=1).update(
            status="succeeded", artifact=frame, finished_at=long_ago)
    linked, release, failures, kept = threading.Event(), threading.Event(), [], []

    def reuse():  # job_advance's reuse: the step takes the artifact; the commit waits for `release`
        try:
            with tenant_scope(tenant_a.organization), transaction.atomic():
                Step.objects.filter(job=running, stage="frame", shot=1).update(
                    status="succeeded", artifact=frame, reused=True, finished_at=timezone.now())
                with connection.cursor() as cursor:  # the foreign key's check (and its row lock) now, not at commit
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                linked.set()
                release.wait(timeout=30)
        except Exception as exc:
            failures.append(exc)
        finally:
            linked.set()
            connection.close()

    def cleanup():
        try:
            linked.wait(timeout=30)
            kept.append(not _artifact_delete(frame.pk, timezone.now() - timedelta(days=30)))
        except Exception as exc:
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reuse), threading.Thread(target=cleanup)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:  # the cleanup has listed the frame and waits for its row lock
        while True:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND query LIKE '%%generation_artifact%%FOR UPDATE%%'")
            waiting = cursor.fetchone()[0]
            if waiting or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    release.set()
    for thread in threads:
        thread.join(timeout=60)
    assert waiting and not failures
    assert kept == [True]
    with tenant_scope(tenant_a.organization):
        step = Step.objects.get(job=running, stage="frame", shot=1)
        assert step.status == "succeeded" and step.artifact_id == frame.pk
        assert Step.objects.get(job=finished, stage="frame", shot=1).artifact_id == frame.pk
        assert Artifact.objects.filter(pk=frame.pk).exists()
    assert (Path(frame.file.storage.path(frame.file.name))).read_bytes() == PNG_MAGIC
