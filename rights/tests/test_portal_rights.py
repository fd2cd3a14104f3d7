"""Portal pages of rights: assets (list, upload with the portal endpoint, detail with the rights
panel and the preview), the public verification page and the certificate page."""
import io
import os
import subprocess

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext

from config.media import ffmpeg_exe
from config.tenancy import tenant_scope
from generation.queue.worker import registrations_anchor
from rights.models import Content, Registration
from rights.tests.test_verify_api import png_claiming

XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *map(str, args)], check=True,
                   timeout=120)


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "poster.png"
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=320x240", "-frames:v", "1", path)
    return path


@pytest.fixture
def mp4(tmp_path):
    path = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=12:duration=2", "-pix_fmt", "yuv420p", path)
    return path


def signed_in(client, user):
    client.force_login(user)
    return client


def upload(client, path, title="Secret poster", **headers):
    with open(path, "rb") as handle:
        return client.post("/assets/upload", {"file": handle, "title": title}, **headers)


def make_contents(tenant, count, label="Clip"):
    with tenant_scope(tenant.organization):
        for number in range(count):
            content = Content.objects.create(
                organization=tenant.organization, content_id=f"{label[:2].upper()}{number:06d}", kind="video",
                source="generated" if number % 2 else "upload", title=f"{label} {number}", sha256=f"{number:064x}")
            if number % 3:
                Registration.objects.create(organization=tenant.organization, content=content, leaf=f"0x{number:064x}")


# --- the rights panel ----------------------------------------------------------------------------


def test_rights_panel_empty_state_and_hold():
    empty = render_to_string("rights/_rights_panel.html", {"rights": None})
    assert "Rights are added when the video is protected." in empty
    held = render_to_string("rights/_rights_panel.html", {"rights": {"hold": {"matches": [
        {"owner": "Other Studio", "content_id": "ZZZZ2345", "matched_fraction": 0.9}]}}})
    assert 'id="rights-hold"' in held and "Other Studio" in held


# --- assets --------------------------------------------------------------------------------------


def test_upload_through_the_portal_protects_registers_and_shows_the_rights(client, tenant_a, png):
    signed_in(client, tenant_a.member("producer"))
    page = client.get("/assets/").content.decode()
    assert 'id="upload-form"' in page and "No assets yet" in page

    response = upload(client, png, **XHR)
    assert response.status_code == 201, response.content[:300]
    url = response.json()["url"]
    with tenant_scope(tenant_a.organization):
        content = Content.objects.select_related("registration").get(content_id=response.json()["content_id"])
    assert url == f"/assets/{content.pk}/" and content.title == "Secret poster" and content.kind == "image"
    assert content.registration.status == "pending"

    detail = client.get(url).content.decode()
    assert content.content_id in detail and 'data-field="registration-status">pending' in detail
    assert "Protected. Its registration is queued" in detail  # the message the script's redirect shows
    assert '<img class="preview" src="?file=protected"' in detail
    served = client.get(url + "?file=protected")
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert b"".join(served.streaming_content).startswith(b"\x89PNG")

    registrations_anchor()
    detail = client.get(url).content.decode()
    with tenant_scope(tenant_a.organization):
        registration = Registration.objects.select_related("batch").get(content=content)
    assert registration.status in ("anchored", "confirmed") and registration.tx_hash
    assert registration.tx_hash in detail and registration.batch.merkle_root in detail
    assert "proof valid on chain" in detail and f"/certificates/{content.content_id}/" in detail

    listing = client.get("/assets/").content.decode()
    assert "Secret poster" in listing and content.content_id in listing


def test_upload_without_script_redirects_and_video_gets_a_player(client, tenant_a, mp4):
    signed_in(client, tenant_a.member("producer"))
    response = upload(client, mp4, title="")
    assert response.status_code == 302
    detail = client.get(response["Location"])
    text = detail.content.decode()
    assert '<video controls preload="metadata" src="?file=protected"' in text and "clip.mp4" in text
    ranged = client.get(response["Location"] + "?file=protected", HTTP_RANGE="bytes=0-99")
    assert ranged.status_code == 206 and ranged["Content-Type"] == "video/mp4"


@pytest.mark.parametrize("content, status, code", [
    (b"not media at all", 415, "unsupported_type"),
    (png_claiming(100_000, 100_000), 413, "image_too_large"),
    (b"", 400, None),
])
def test_upload_refusals_are_readable_4xx(client, tenant_a, content, status, code):
    signed_in(client, tenant_a.member("producer"))
    response = client.post("/assets/upload", {"file": io.BytesIO(content)}, **XHR)
    assert response.status_code == status, response.content[:300]
    assert code is None or response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    page = client.post("/assets/upload", {"file": io.BytesIO(content)})
    assert page.status_code == status and 'class="errorlist' in page.content.decode()
    with tenant_scope(tenant_a.organization):
        assert not Content.objects.exists()


def test_upload_over_the_size_limit_is_413(client, tenant_a, png, settings):
    settings.VERIFY_MAX_BYTES = 1000
    signed_in(client, tenant_a.member("producer"))
    response = upload(client, png, **XHR)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_viewer_sees_no_upload_form_and_a_forged_upload_is_refused(client, tenant_a, png):
    make_contents(tenant_a, 2)
    signed_in(client, tenant_a.member("viewer"))
    page = client.get("/assets/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Clip 1" in text and 'id="upload-form"' not in text and "upload.js" not in text
    assert upload(client, png).status_code == 403
    assert upload(client, png, **XHR).status_code == 403
    with tenant_scope(tenant_a.organization):
        assert Content.objects.count() == 2
    reviewer = signed_in(client, tenant_a.member("reviewer"))
    assert upload(reviewer, png).status_code == 403


def test_anonymous_is_sent_to_sign_in(client, tenant_a):
    make_contents(tenant_a, 1)
    with tenant_scope(tenant_a.organization):
        content = Content.objects.get()
    for url in ("/assets/", f"/assets/{content.pk}/", f"/assets/{content.pk}/?file=protected"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_another_organization_gets_404_and_never_sees_the_assets(client, tenant_a, tenant_b, png):
    signed_in(client, tenant_a.member("producer"))
    url = upload(client, png, title="Alpha private poster", **XHR).json()["url"]
    make_contents(tenant_b, 2, label="Bravo")
    signed_in(client, tenant_b.owner)
    assert client.get(url).status_code == 404
    assert client.get(url + "?file=protected").status_code == 404
    assert client.post(url).status_code == 404
    listing = client.get("/assets/").content.decode()
    assert "Bravo 1" in listing and "Alpha private poster" not in listing and url not in listing


def test_asset_list_query_count_is_fixed(client, tenant_a):
    signed_in(client, tenant_a.member("producer"))

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/assets/").status_code == 200
        return len(captured)

    make_contents(tenant_a, 2)
    few = queries()
    make_contents(tenant_a, 23, label="More")
    many = queries()
    page = client.get("/assets/").content.decode()
    assert page.count('href="/assets/') >= 25 + 1  # every row links to its asset (the nav links once)
    assert few == many, (few, many)
    assert many <= 12, many


# --- public verification ---------------------------------------------------------------------------


def test_verify_page_renders_for_anyone(client, db):
    page = client.get("/verify/")
    assert page.status_code == 200
    text = page.content.decode()
    for marker in ('id="verify-form"', 'id="verify-dropzone"', 'id="verify-file"', 'id="verify-sha256"',
                   'id="verify-submit"', 'id="verify-result"', "verify.js"):
        assert marker in text, marker
    assert 'value="' + "c" * 64 in client.get("/verify/?sha256=" + "c" * 64).content.decode()


def test_verify_by_hash_shows_the_owner_and_nothing_private(client, registered, tenant_a):
    response = client.post("/verify/", {"sha256": "A" * 64})
    assert response.status_code == 200
    text = response.content.decode()
    assert 'data-verdict="registered"' in text and tenant_a.organization.public_name in text
    assert 'data-method="exact_hash"' in text and "/certificates/ABCD2345/" in text
    assert "Confidential" not in text and "secret" not in text

    missing = client.post("/verify/", {"sha256": "b" * 64})
    assert missing.status_code == 200 and 'data-verdict="not_found"' in missing.content.decode()

    fragment = client.post("/verify/", {"sha256": "a" * 64}, **XHR).content.decode()
    assert 'data-verdict="registered"' in fragment and "<html" not in fragment


def test_verify_by_file_finds_an_uploaded_asset_with_its_on_chain_proof(client, tenant_a, png):
    member = signed_in(client, tenant_a.member("producer"))
    url = upload(member, png, **XHR).json()["url"]
    registrations_anchor()
    protected = b"".join(member.get(url + "?file=protected").streaming_content)
    client.logout()
    response = client.post("/verify/", {"file": io.BytesIO(protected)})
    assert response.status_code == 200, response.content[:300]
    text = response.content.decode()
    assert 'data-verdict="registered"' in text and 'data-method="exact_hash"' in text
    assert 'data-method="watermark"' in text or 'data-method="c2pa"' in text
    assert text.count('<li class="match"') == 1  # one entry per content, with every method that found it
    assert "proof valid on chain" in text and 'data-field="tx-hash"' in text
    assert "Secret poster" not in text and "@" not in text.split('id="verify-result"')[1]


@pytest.mark.parametrize("data, status, code", [
    ({"file": io.BytesIO(os.urandom(4096))}, 415, "unsupported_type"),
    ({"file": io.BytesIO(png_claiming(100_000, 100_000))}, 413, "image_too_large"),
    ({"file": io.BytesIO(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + os.urandom(2000))}, 400,
     "unreadable_file"),
    ({"file": io.BytesIO(b"")}, 400, "empty_file"),
    ({"sha256": "xyz"}, 400, "invalid"),
    ({}, 400, "invalid"),
])
def test_verify_bad_input_is_a_readable_4xx(client, db, data, status, code):
    response = client.post("/verify/", data)
    assert response.status_code == status, response.content[:300]
    text = response.content.decode()
    assert 'id="verify-error"' in text and f'data-code="{code}"' in text


def test_verify_over_the_size_limit_is_413(client, db, settings, png):
    settings.VERIFY_MAX_BYTES = 1000
    with open(png, "rb") as handle:
        response = client.post("/verify/", {"file": handle}, **XHR)
    assert response.status_code == 413 and 'data-code="payload_too_large"' in response.content.decode()


def test_verify_shares_the_api_rate_limit(client, db, settings):
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "verify": "2/min"}
    assert client.post("/verify/", {"sha256": "b" * 64}).status_code == 200
    from rest_framework.test import APIClient

    assert APIClient().post("/api/v1/verify", {"sha256": "b" * 64}, format="json").status_code == 200
    limited = client.post("/verify/", {"sha256": "b" * 64})
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert 'data-code="throttled"' in limited.content.decode()
    assert client.get("/verify/").status_code == 200  # reading the page is not limited


# --- the certificate ----------------------------------------------------------------------------


def test_certificate_page_shows_public_facts_only(client, registered, tenant_a):
    page = client.get("/certificates/ABCD2345/")
    assert page.status_code == 200
    text = page.content.decode()
    assert tenant_a.organization.public_name in text and "ABCD2345" in text and "a" * 64 in text
    assert 'id="certificate-verdict"' in text and f'/verify/?sha256={"a" * 64}' in text
    assert "Confidential" not in text and "secret" not in text and tenant_a.owner.email not in text
    assert client.get("/certificates/NOPE0000/").status_code == 404
