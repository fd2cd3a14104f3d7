"""Content credentials: the deployment's CA, signing MP4/PNG/JPEG, and reading back trusting only our root."""
import io
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from django.core.management import call_command
from PIL import Image

from config.media import ffmpeg_exe
from rights.credentials import (
    AI_GENERATED,
    CAPTURED,
    CA_FILES,
    ROOT_CERT,
    SIGNER_CERT,
    CredentialError,
    ca_ensure,
    credential_read,
    credential_sign,
)

MP4, PNG, JPEG = "video/mp4", "image/png", "image/jpeg"


@pytest.fixture(autouse=True)
def keys(settings, tmp_path) -> Path:
    settings.RIGHTS_KEYS_DIR = tmp_path / "keys"
    return settings.RIGHTS_KEYS_DIR


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)],
        check=True, timeout=60,
    )
    return path


def image(tmp_path: Path, mime: str) -> Path:
    path = tmp_path / ("still.png" if mime == PNG else "still.jpg")
    pixels = Image.effect_noise((96, 64), 40).convert("RGB")
    pixels.save(path, format="PNG" if mime == PNG else "JPEG", quality=90)
    return path


def source(request_mime: str, tmp_path: Path, mp4: Path) -> Path:
    return mp4 if request_mime == MP4 else image(tmp_path, request_mime)


def sign(src: Path, dst: Path, mime: str, **kwargs) -> dict:
    return credential_sign(src, dst, mime_type=mime, author=kwargs.pop("author", "Acme Films"),
                           title=kwargs.pop("title", "Trailer"), **kwargs)


def flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


# --- the CA --------------------------------------------------------------------------------------


def test_setup_ca_creates_a_root_and_a_c2pa_signer_with_private_keys_0600(keys):
    out = io.StringIO()
    call_command("setup_ca", stdout=out)

    assert sorted(p.name for p in keys.iterdir() if not p.name.startswith(".")) == sorted(CA_FILES)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for name in CA_FILES:
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600, name
    root = x509.load_pem_x509_certificate((keys / ROOT_CERT).read_bytes())
    signer = x509.load_pem_x509_certificate((keys / SIGNER_CERT).read_bytes())
    assert root.subject == root.issuer and signer.issuer == root.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert signer.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature is True
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in signer.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    signer.verify_directly_issued_by(root)
    fingerprint = root.fingerprint(hashes.SHA256()).hex(":").upper()
    assert "Created" in out.getvalue() and fingerprint in out.getvalue()


def test_setup_ca_is_idempotent_and_force_replaces_it(keys):
    call_command("setup_ca", stdout=io.StringIO())
    before = {name: (keys / name).read_bytes() for name in CA_FILES}

    out = io.StringIO()
    call_command("setup_ca", stdout=out)
    assert {name: (keys / name).read_bytes() for name in CA_FILES} == before
    assert "already exists" in out.getvalue()

    call_command("setup_ca", "--force", stdout=io.StringIO())
    assert (keys / ROOT_CERT).read_bytes() != before[ROOT_CERT]
    [retired] = [p for p in keys.iterdir() if p.name.startswith("retired-")]
    assert (retired / ROOT_CERT).read_bytes() == before[ROOT_CERT]
    assert stat.S_IMODE((keys / "root-ca.key").stat().st_mode) == 0o600


def test_concurrent_first_use_creates_one_ca(keys):
    results = []
    threads = [threading.Thread(target=lambda: results.append(ca_ensure())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["created"] for r in results) == 1
    assert len({r["root_fingerprint"] for r in results}) == 1


def test_production_refuses_to_sign_without_a_ca(settings, tmp_path, keys):
    settings.PRODUCTION = True
    png = image(tmp_path, PNG)
    with pytest.raises(CredentialError) as caught:
        sign(png, tmp_path / "out.png", PNG)
    assert caught.value.code == "ca_missing"
    assert not keys.exists() or not any(keys.iterdir())


# --- signing and reading -------------------------------------------------------------------------


@pytest.mark.parametrize("mime", [MP4, PNG, JPEG])
def test_signed_file_reads_back_valid_with_author_and_ai_created_action(mime, tmp_path, mp4, keys):
    src = source(mime, tmp_path, mp4)
    dst = tmp_path / f"signed{src.suffix}"
    original = src.read_bytes()

    summary = sign(src, dst, mime, content_id="K7QX2M9P", ingredients=[
        {"title": "reference.png", "format": PNG, "sha256": "AB" * 32},
    ])

    assert (keys / ROOT_CERT).exists()  # created lazily in the embedded mode
    assert src.read_bytes() == original
    assert summary["label"].startswith("urn:c2pa:") and summary["signed_at"]
    assert "Content Credentials Signer" in summary["signer_subject"]
    found = credential_read(dst)
    assert found["valid"] is True and found["state"] == "Trusted" and found["validation_errors"] == []
    assert found["label"] == summary["label"]
    assert found["author"] == "Acme Films" and found["title"] == "Trailer"
    assert found["generator"] == "Studio platform"
    assert found["content_id"] == "K7QX2M9P"
    [created] = [a for a in found["actions"] if a["action"] == "c2pa.created"]
    assert created["digital_source_type"] == AI_GENERATED
    assert found["ingredients"] == [{"title": "reference.png", "format": PNG, "relationship": "inputTo",
                                     "instance_id": "sha256:" + "ab" * 32}]
    assert found["signer"]["common_name"] == summary["signer"]["common_name"]


def test_upload_is_marked_as_captured_and_signing_in_place_works(tmp_path):
    png = image(tmp_path, PNG)
    sign(png, png, PNG, ai_generated=False, generator="Studio uploads")
    found = credential_read(png)
    assert found["valid"] is True and found["generator"] == "Studio uploads"
    assert [a["digital_source_type"] for a in found["actions"]] == [CAPTURED]
    assert found["content_id"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_ingredient_file_is_embedded(tmp_path):
    reference = image(tmp_path, JPEG)
    png = image(tmp_path, PNG)
    sign(png, tmp_path / "out.png", PNG, ingredients=[{"title": "ref.jpg", "format": JPEG, "path": reference}])
    found = credential_read(tmp_path / "out.png")
    assert found["valid"] is True
    assert [(i["title"], i["relationship"]) for i in found["ingredients"]] == [("ref.jpg", "inputTo")]


@pytest.mark.parametrize("mime", [MP4, PNG])
def test_tampering_with_the_bytes_after_signing_fails_validation(mime, tmp_path, mp4):
    src = source(mime, tmp_path, mp4)
    dst = tmp_path / f"signed{src.suffix}"
    sign(src, dst, mime)
    data = dst.read_bytes()
    # Inside the media data, not the manifest: the picture itself changes.
    at = data.index(b"mdat") + 200 if mime == MP4 else data.index(b"IDAT") + 20
    flip_byte(dst, at)

    found = credential_read(dst)
    assert found["valid"] is False
    assert any("mismatch" in error["code"] for error in found["validation_errors"]), found["validation_errors"]


def test_a_signature_from_another_ca_is_not_trusted(settings, tmp_path):
    png = image(tmp_path, PNG)
    settings.RIGHTS_KEYS_DIR = tmp_path / "other-deployment"
    sign(png, tmp_path / "foreign.png", PNG)
    assert credential_read(tmp_path / "foreign.png")["valid"] is True  # by its own root

    settings.RIGHTS_KEYS_DIR = tmp_path / "ours"
    ca_ensure()
    found = credential_read(tmp_path / "foreign.png")
    assert found["valid"] is False and found["author"] == "Acme Films"
    assert "signingCredential.untrusted" in [error["code"] for error in found["validation_errors"]]


def test_without_any_ca_nothing_is_trusted(settings, tmp_path):
    png = image(tmp_path, PNG)
    sign(png, tmp_path / "signed.png", PNG)
    settings.RIGHTS_KEYS_DIR = tmp_path / "empty"
    assert credential_read(tmp_path / "signed.png")["valid"] is False


@pytest.mark.parametrize("mime", [MP4, PNG, JPEG])
def test_a_file_without_a_manifest_reads_as_none(mime, tmp_path, mp4):
    assert credential_read(source(mime, tmp_path, mp4)) is None


def test_a_file_of_no_media_type_reads_as_none(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not media")
    assert credential_read(text) is None


def test_signing_an_unsupported_type_is_a_domain_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not media")
    with pytest.raises(CredentialError) as caught:
        sign(text, tmp_path / "out.txt", "text/plain")
    assert caught.value.code == "unsupported_type"
    assert not (tmp_path / "out.txt").exists()


def test_a_parent_ingredient_is_refused_for_a_created_asset(tmp_path):
    png = image(tmp_path, PNG)
    with pytest.raises(ValueError):
        sign(png, tmp_path / "out.png", PNG, ingredients=[{"title": "x", "relationship": "parentOf"}])


def test_the_root_key_may_be_moved_offline(keys, tmp_path):
    first = ca_ensure()
    (keys / "root-ca.key").unlink()
    again = ca_ensure()
    assert again["created"] is False and again["root_fingerprint"] == first["root_fingerprint"]
    png = image(tmp_path, PNG)
    sign(png, tmp_path / "out.png", PNG)
    assert credential_read(tmp_path / "out.png")["valid"] is True
