"""The Content-Security-Policy (config/middleware.py): on every response, portal pages included; the
portal's templates carry nothing it would refuse (inline scripts, event handlers, style attributes),
so the policy needs no 'unsafe-inline'; with S3 storage, pictures and video may come from the store."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from config.middleware import content_security_policy, storage_media_origins

ROOT = Path(__file__).resolve().parents[2]
PORTAL_PAGES = ["/", "/projects/", "/jobs/", "/jobs/new/", "/assets/", "/templates/", "/templates/new/", "/team/",
                "/team/api-keys/", "/team/webhooks/", "/team/audit/", "/verify/", "/no-such-page/"]


def directives(header: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


def test_every_portal_page_carries_the_policy(tenant_a, client):
    client.force_login(tenant_a.owner)
    project = tenant_a.project("Lighthouse")
    pages = [*PORTAL_PAGES, f"/projects/{project.pk}/", "/login/", "/api/v1/docs", "/admin/login/"]
    for path in pages:
        response = client.get(path)
        assert response.status_code in (200, 302, 404), (path, response.status_code)
        policy = directives(response["Content-Security-Policy"])
        assert policy["script-src"] == "'self'", path
        assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'", path
        assert policy["base-uri"] == "'self'" and policy["form-action"] == "'self'", path
        assert policy["connect-src"] == "'self' ws://testserver wss://testserver", path
        if not path.startswith("/api/v1/docs"):
            assert policy["style-src"] == "'self'", path
        if response.status_code == 200 and "text/html" in response["Content-Type"] and not path.startswith(
                ("/api/", "/admin/")):
            html = response.content.decode()
            assert not INLINE_SCRIPT.search(html) and not HANDLER.search(html) and not STYLE.search(html), path
    anonymous = client.__class__().get("/login/")
    assert directives(anonymous["Content-Security-Policy"])["default-src"] == "'self'"


def test_the_api_docs_run_their_script_from_a_file(client, db):
    html = client.get("/api/v1/docs").content.decode()
    assert not INLINE_SCRIPT.search(html)
    script = re.search(r'<script src="([^"]*\?script=?)"', html)
    assert script, html
    assert client.get(script.group(1)).status_code == 200


def test_with_s3_storage_media_may_come_from_the_stores_public_address(settings):
    assert storage_media_origins() == [] if settings.STORAGE_BACKEND == "local" else True
    settings.STORAGE_BACKEND = "s3"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage",
                                                          "OPTIONS": {"endpoint_url": "http://minio:9000"}}}
    settings.S3_PUBLIC_ENDPOINT_URL = "https://files.example.org/some/path"
    assert storage_media_origins() == ["https://files.example.org"]
    settings.S3_PUBLIC_ENDPOINT_URL = ""
    assert storage_media_origins() == ["http://minio:9000"]
    policy = directives(content_security_policy(path="/jobs/", host="studio.example.org",
                                                media_origins=["https://files.example.org"]))
    assert policy["img-src"] == "'self' data: blob: https://files.example.org"
    assert policy["media-src"] == "'self' blob: https://files.example.org"
    assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"


# --- the templates: nothing the policy refuses ------------------------------------------------------

# A <script> that runs code of its own (not src=, not a JSON data block).
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/(?:ld\+)?json\")[^>]*>", re.I)
HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)
STYLE = re.compile(r"<[a-z][^>]*\sstyle\s*=|<style[\s>]", re.I)
JAVASCRIPT_URL = re.compile(r"(?:href|src|action)\s*=\s*[\"']?\s*javascript:", re.I)


def template_files() -> list[Path]:
    folders = [Path(folder) for engine in settings.TEMPLATES for folder in engine.get("DIRS", [])]
    folders += [path for path in ROOT.glob("*/templates") if path.is_dir()]
    return sorted({path for folder in folders for path in folder.rglob("*.html")})


def test_no_template_has_an_inline_script_an_event_handler_or_a_style_attribute():
    files = template_files()
    assert len(files) > 20
    found = []
    for path in files:
        text = path.read_text()
        for name, pattern in (("inline script", INLINE_SCRIPT), ("event handler", HANDLER), ("style", STYLE),
                              ("javascript: URL", JAVASCRIPT_URL)):
            found += [f"{path.relative_to(ROOT)}: {name}: {match.group(0)[:80]}" for match in pattern.finditer(text)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("sample, pattern", [
    ('<script>alert(1)</script>', INLINE_SCRIPT),
    ('<script type="module">go()</script>', INLINE_SCRIPT),
    ('<select name="x" onchange="this.form.submit()">', HANDLER),
    ('<button class="a" onClick = "go()">', HANDLER),
    ('<div style="color: red">', STYLE),
    ('<style>p { color: red }</style>', STYLE),
    ('<a href="javascript:go()">', JAVASCRIPT_URL),
])
def test_the_template_walk_catches_each_kind(sample, pattern):
    assert pattern.search(sample)
    assert not INLINE_SCRIPT.search('<script src="/static/js/job.js" defer></script>')
    assert not INLINE_SCRIPT.search('<script id="labels" type="application/json">{}</script>')
    assert not HANDLER.search('<form method="post" action="/x" data-confirm="Sure?">')
