"""Content credentials: the deployment's own private CA, and C2PA manifests signed with it and read back
trusting that CA alone. Keys live as PEM files in RIGHTS_KEYS_DIR (0600), never in the database.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import tempfile
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings

from config.errors import DomainError
from rights.error_codes import RightsErrors

logger = logging.getLogger(__name__)

ROOT_CERT, ROOT_KEY = "root-ca.pem", "root-ca.key"
SIGNER_CERT, SIGNER_KEY = "signer.pem", "signer.key"
CA_FILES = (ROOT_CERT, ROOT_KEY, SIGNER_CERT, SIGNER_KEY)
# What signing and reading need. The root key is only for issuing, so an operator may move it offline.
IN_USE_FILES = (ROOT_CERT, SIGNER_CERT, SIGNER_KEY)

# No timestamp authority is used (nothing may reach the network), so the SDK checks the signing
# certificate's validity at read time: once it expires, every credential it signed reads as invalid.
# Hence long lifetimes; rotate the signer before it runs out.
ROOT_LIFETIME = datetime.timedelta(days=365 * 20)
SIGNER_LIFETIME = datetime.timedelta(days=365 * 10)
CLOCK_SKEW = datetime.timedelta(minutes=5)
# C2PA requires one of these EKUs on the signing certificate and refuses anyExtendedKeyUsage.
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")

SOURCE_TYPE_URL = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI_GENERATED = SOURCE_TYPE_URL + "trainedAlgorithmicMedia"
CAPTURED = SOURCE_TYPE_URL + "digitalCapture"
CONTENT_ASSERTION = "com.studio.content"  # our own assertion: the public content id
INGREDIENT_RELATIONSHIPS = {"inputTo", "componentOf"}  # a created asset has no parent

# Offline by construction: no OCSP, no remote manifests, no timestamp authority, no thumbnails
# (they add tens of KB per image and a decode per signature for nothing the verifier needs).
SDK_SETTINGS = {
    "verify": {"verify_trust": True, "ocsp_fetch": False, "remote_manifest_fetch": False},
    "builder": {"thumbnail": {"enabled": False}, "auto_timestamp_assertion": {"enabled": False}},
}


class CredentialError(DomainError):
    code = RightsErrors.CREDENTIAL_FAILED


# --- the deployment's CA -------------------------------------------------------------------------


def keys_dir() -> Path:
    return Path(getattr(settings, "RIGHTS_KEYS_DIR", settings.VAR_DIR / "keys"))


def _ca_present(folder: Path) -> bool:
    return all((folder / name).is_file() for name in IN_USE_FILES)


@contextlib.contextmanager
def _ca_lock(folder: Path):
    """Serialises CA creation across processes: workers may all reach for it on first use."""
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_private(path: Path, data: bytes) -> None:
    """Atomic write, 0600 from the first byte (never briefly world-readable)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _name(organization: str, common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _key_usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signing, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=not signing, crl_sign=not signing, encipher_only=False,
        decipher_only=False,
    )


def ca_issue() -> dict[str, bytes]:
    """A fresh root (self-signed, CA:true, pathlen 0) and an ES256 signing certificate issued by it,
    as PEM bytes keyed by file name. Writes nothing."""
    now = datetime.datetime.now(datetime.timezone.utc)
    organization = getattr(settings, "RIGHTS_CA_ORGANIZATION", "Studio platform")
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(organization, f"{organization} Content Credentials Root CA")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signing=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = (
        x509.CertificateBuilder()
        .subject_name(_name(organization, f"{organization} Content Credentials Signer")).issuer_name(root_name)
        .public_key(signer_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + SIGNER_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signing=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    return {
        ROOT_CERT: root.public_bytes(serialization.Encoding.PEM),
        ROOT_KEY: key_pem(root_key),
        SIGNER_CERT: signer.public_bytes(serialization.Encoding.PEM),
        SIGNER_KEY: key_pem(signer_key),
    }


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def ca_describe(folder: Path | None = None) -> dict:
    folder = folder or keys_dir()
    root = x509.load_pem_x509_certificate((folder / ROOT_CERT).read_bytes())
    signer = x509.load_pem_x509_certificate((folder / SIGNER_CERT).read_bytes())
    return {
        "keys_dir": str(folder),
        "root_subject": root.subject.rfc4514_string(),
        "root_fingerprint": _fingerprint(root),
        "signer_subject": signer.subject.rfc4514_string(),
        "signer_not_after": signer.not_valid_after_utc.isoformat(),
    }


def ca_ensure(*, force: bool = False) -> dict:
    """Create the CA and signing certificate unless already there (or `force`); the root key may be absent.
    Returns ca_describe() plus `created`. A forced run moves the previous files to retired-<time>/:
    credentials signed under the old root no longer read as trusted."""
    folder = keys_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _ca_lock(folder):
        created = force or not _ca_present(folder)
        if created:
            existing = [name for name in CA_FILES if (folder / name).exists()]
            if existing:
                stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
                retired = folder / f"retired-{stamp}"
                retired.mkdir(mode=0o700)
                for name in existing:
                    os.replace(folder / name, retired / name)
            files = ca_issue()
            # The root certificate last: its presence is what the next check sees as "done".
            for name in (ROOT_KEY, SIGNER_KEY, SIGNER_CERT, ROOT_CERT):
                _write_private(folder / name, files[name])
            logger.info("rights: created the content-credentials CA in %s", folder)
    return {"created": created, **ca_describe(folder)}


# --- signing and reading -------------------------------------------------------------------------


def _context(root_pem: str | None) -> c2pa.Context:
    config = {**SDK_SETTINGS}
    if root_pem:
        # The only trust anchor. Without it nothing can be Trusted, which is the safe failure.
        config["trust"] = {"trust_anchors": root_pem}
    return c2pa.Context.from_dict(config)


def _root_pem() -> str | None:
    path = keys_dir() / ROOT_CERT
    return path.read_text() if path.is_file() else None


def _signing_material() -> tuple[bytes, bytes]:
    folder = keys_dir()
    if not _ca_present(folder):
        if getattr(settings, "PRODUCTION", False):
            raise CredentialError("No content-credentials CA: run `manage.py setup_ca` on this deployment.",
                                  code=RightsErrors.CA_MISSING)
        ca_ensure()
    return (folder / SIGNER_CERT).read_bytes(), (folder / SIGNER_KEY).read_bytes()


def _manifest_definition(*, author: str, title: str, generator: str, ai_generated: bool, when: str,
                         content_id: str | None, hash_ingredients: list[dict]) -> dict:
    action = {
        "action": "c2pa.created",
        "when": when,
        "softwareAgent": {"name": generator},
        "digitalSourceType": AI_GENERATED if ai_generated else CAPTURED,
    }
    assertions = [
        {"label": "c2pa.actions", "data": {"actions": [action]}},
        {"label": "stds.schema-org.CreativeWork", "data": {
            "@context": "https://schema.org",
            "@type": "CreativeWork",
            "author": [{"@type": "Organization", "name": author}],
        }},
    ]
    if content_id:
        assertions.append({"label": CONTENT_ASSERTION, "data": {"content_id": content_id}})
    return {
        "title": title,
        "claim_generator_info": [{"name": generator}],
        "assertions": assertions,
        "ingredients": hash_ingredients,
    }


def _ingredient(item: dict) -> dict:
    relationship = item.get("relationship", "inputTo")
    if relationship not in INGREDIENT_RELATIONSHIPS:
        raise ValueError(f"ingredient relationship must be one of {sorted(INGREDIENT_RELATIONSHIPS)}")
    ingredient = {"title": item["title"], "relationship": relationship}
    if item.get("format"):
        ingredient["format"] = item["format"]
    if item.get("sha256"):
        # The SDK keeps no free hash field on an ingredient; instance_id carries it, spelled out.
        ingredient["instance_id"] = f"sha256:{item['sha256'].lower()}"
    return ingredient


def credential_sign(src: Path, dst: Path, *, mime_type: str, author: str, title: str,
                    generator: str = "Studio platform", ingredients: list[dict] | None = None,
                    ai_generated: bool = True, content_id: str | None = None) -> dict:
    """Write `dst`: `src` with a C2PA manifest signed by the deployment's signer. `src` may equal `dst`.

    `ingredients`: dicts with `title` and optionally `sha256`, `format`, `relationship` (inputTo, the
    default, or componentOf) and `path`: a file the SDK reads and embeds as the ingredient (its own
    manifest included). Returns the summary worth keeping on the content row.
    """
    src, dst = Path(src), Path(dst)
    signed_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cert_pem, key_pem = _signing_material()
    ingredients = ingredients or []
    definition = _manifest_definition(
        author=author, title=title, generator=generator, ai_generated=ai_generated,
        when=signed_at.isoformat().replace("+00:00", "Z"), content_id=content_id,
        hash_ingredients=[_ingredient(item) for item in ingredients if not item.get("path")],
    )
    root_pem = _root_pem()
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".c2pa")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with c2pa.Builder.from_json(definition, context=_context(root_pem)) as builder:
            for item in ingredients:
                if item.get("path"):
                    with open(item["path"], "rb") as source:
                        builder.add_ingredient(_ingredient(item), item.get("format") or "", source)
            signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, cert_pem, key_pem, None))
            with signer, open(src, "rb") as source, open(tmp, "w+b") as target:
                builder.sign(signer, mime_type, source, target)
        os.chmod(tmp, 0o644)
        # Read back before replacing dst: a credential that does not validate is never published.
        summary = credential_read(tmp)
        if not summary or not summary["valid"]:
            raise CredentialError("The signed file does not validate against the deployment's root.",
                                  code=RightsErrors.SIGNING_FAILED,
                                  fields={"errors": (summary or {}).get("validation_errors")})
        os.replace(tmp, dst)
    except c2pa.C2paError.NotSupported as exc:
        raise CredentialError(f"Content credentials cannot be embedded in {mime_type}.",
                              code=RightsErrors.UNSUPPORTED_TYPE) from exc
    except c2pa.C2paError as exc:
        raise CredentialError(f"Signing the content credential failed: {exc}",
                              code=RightsErrors.SIGNING_FAILED) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return {
        "label": summary["label"],
        "signer": summary["signer"],
        "signer_subject": x509.load_pem_x509_certificate(cert_pem).subject.rfc4514_string(),
        "root_fingerprint": _fingerprint(x509.load_pem_x509_certificate(root_pem.encode())),
        "signed_at": signed_at.isoformat(),
        "alg": "ES256",
        "mime_type": mime_type,
        "content_id": content_id,
    }


def _authors(manifest: dict) -> list[str]:
    for assertion in manifest.get("assertions", []):
        if assertion.get("label", "").startswith("stds.schema-org.CreativeWork"):
            return [a.get("name") for a in assertion.get("data", {}).get("author", []) if a.get("name")]
    return []


def _assertion_data(manifest: dict, label: str) -> dict:
    for assertion in manifest.get("assertions", []):
        if assertion.get("label") == label:
            return assertion.get("data") or {}
    return {}


def _actions(manifest: dict) -> list[dict]:
    actions = []
    for assertion in manifest.get("assertions", []):
        if assertion.get("label", "").split(".v")[0] != "c2pa.actions":
            continue
        for action in assertion.get("data", {}).get("actions", []):
            agent = action.get("softwareAgent")
            actions.append({
                "action": action.get("action"),
                "digital_source_type": action.get("digitalSourceType"),
                "when": action.get("when"),
                "software_agent": agent.get("name") if isinstance(agent, dict) else agent,
            })
    return actions


def _unreadable(exc: Exception) -> dict:
    return {
        "valid": False, "state": "Invalid",
        "validation_errors": [{"code": "manifest.unreadable", "explanation": str(exc)}],
        "label": None, "title": None, "author": None, "authors": [], "generator": None, "actions": [],
        "ingredients": [], "signer": None, "content_id": None,
    }


def credential_read(path: Path) -> dict | None:
    """The file's active manifest, validated with the deployment's root as the only trust anchor.
    None when the file carries no manifest (or is of a type that cannot). `valid` means: the
    signature, the hard binding to the file's bytes and the chain up to our root all check out."""
    try:
        with open(path, "rb") as handle:
            reader = c2pa.Reader.try_create(None, handle, context=_context(_root_pem()))
            if reader is None:
                return None
            with reader:
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
                manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError.NotSupported:
        return None
    except c2pa.C2paError as exc:
        logger.info("rights: unreadable content credential in %s: %s", path, exc)
        return _unreadable(exc)

    errors = [{"code": item.get("code"), "explanation": item.get("explanation")}
              for item in (results.get("activeManifest") or {}).get("failure", [])]
    if state != "Trusted" and not errors:
        errors.append({"code": "signingCredential.untrusted", "explanation": f"validation state {state}"})
    authors = _authors(manifest)
    generator_info = manifest.get("claim_generator_info") or [{}]
    signature = manifest.get("signature_info") or {}
    return {
        "valid": state == "Trusted" and not errors,
        "state": state,
        "validation_errors": errors,
        "label": manifest.get("label"),
        "title": manifest.get("title"),
        "author": authors[0] if authors else None,
        "authors": authors,
        "generator": generator_info[0].get("name"),
        "actions": _actions(manifest),
        "ingredients": [
            {key: item.get(key) for key in ("title", "format", "relationship", "instance_id")}
            for item in manifest.get("ingredients", [])
        ],
        "signer": {"common_name": signature.get("common_name"), "issuer": signature.get("issuer"),
                   "alg": signature.get("alg"), "serial": signature.get("cert_serial_number")},
        "content_id": _assertion_data(manifest, CONTENT_ASSERTION).get("content_id"),
    }
