"""Where the platform's files live: local disk (the embedded mode) or a private S3-compatible bucket
through django-storages (production); and the short-lived signed links that downloads redirect to.

Objects in the bucket are never public: no ACL is set (the bucket's own policy applies, which should
block public access), and the only way to read one from outside is a link signed for one object, which
a view hands out after its own access check (config/downloads.py).
"""
from __future__ import annotations

from django.conf import settings
from django.core.files.storage import default_storage

BACKENDS = ("local", "s3")
LOCAL_BACKEND = "django.core.files.storage.FileSystemStorage"
S3_BACKEND = "storages.backends.s3.S3Storage"


def default_storage_config(*, backend: str, bucket: str = "", endpoint_url: str = "", region: str = "",
                           access_key_id: str = "", secret_access_key: str = "", prefix: str = "",
                           signed_url_expiry_s: int = 300) -> dict:
    """STORAGES["default"] for STORAGE_BACKEND (settings.py, and the tests' S3 fixture)."""
    if backend == "local":
        return {"BACKEND": LOCAL_BACKEND}
    if backend != "s3":
        raise ValueError(f"storage backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    from botocore.config import Config

    options = {
        "bucket_name": bucket,
        "endpoint_url": endpoint_url or None,  # None: AWS itself
        "region_name": region or None,
        "location": prefix.strip("/"),
        "default_acl": None,  # private: no public-read, the bucket policy decides
        "querystring_auth": True,  # every link to an object is signed...
        "querystring_expire": signed_url_expiry_s,  # ...and expires
        "file_overwrite": False,  # a name already taken gets a suffix, never another file's bytes
        "client_config": Config(signature_version="s3v4", connect_timeout=5, read_timeout=60,
                                retries={"max_attempts": 3, "mode": "standard"}),
    }
    if access_key_id:  # else boto3's own chain: the instance's or the pod's role
        options.update(access_key=access_key_id, secret_key=secret_access_key)
    return {"BACKEND": S3_BACKEND, "OPTIONS": options}


def storage_is_s3(storage=None) -> bool:
    storage = default_storage if storage is None else storage
    if "storages.backends.s3" not in storage.__class__.__module__:  # __class__: also through LazyObject
        return False
    from storages.backends.s3 import S3Storage

    return isinstance(storage, S3Storage)


def storage_backend_name(storage=None) -> str:
    """'s3' or 'local', as health reports it."""
    return "s3" if storage_is_s3(storage) else "local"


def signed_download_url(field_file, *, filename: str, content_type: str, disposition: str = "inline") -> str | None:
    """A link to the file that works for S3_SIGNED_URL_EXPIRY_S seconds, whose response carries this
    file name and content type; None where the storage cannot sign links (local files are streamed).
    Signed for S3_PUBLIC_ENDPOINT_URL when set: the name browsers reach the store by (a signature
    covers the host, so a link for an internal name could not simply be rewritten)."""
    storage = field_file.storage
    if not storage_is_s3(storage) or not storage.querystring_auth:
        return None
    expiry = settings.S3_SIGNED_URL_EXPIRY_S
    parameters = {
        "ResponseContentDisposition": f'{disposition}; filename="{filename}"',
        "ResponseContentType": content_type,
        "ResponseCacheControl": f"private, max-age={expiry}",
    }
    public = settings.S3_PUBLIC_ENDPOINT_URL
    if not public or public == storage.endpoint_url:
        return storage.url(field_file.name, expire=expiry, parameters=parameters)
    from storages.utils import clean_name

    key = storage._normalize_name(clean_name(field_file.name))  # with S3_PREFIX, as storage.url() does
    return _public_client(storage, public).generate_presigned_url(
        "get_object", Params={"Bucket": storage.bucket_name, "Key": key, **parameters}, ExpiresIn=expiry)


_public_clients: dict[tuple, object] = {}


def _public_client(storage, endpoint_url: str):
    """A boto3 client with the storage's credentials that signs for the public endpoint (made once)."""
    cache_key = (endpoint_url, storage.access_key, storage.region_name, storage.bucket_name)
    if cache_key not in _public_clients:
        import boto3

        session = boto3.session.Session(aws_access_key_id=storage.access_key, aws_secret_access_key=storage.secret_key,
                                        aws_session_token=storage.security_token)
        _public_clients[cache_key] = session.client("s3", endpoint_url=endpoint_url, region_name=storage.region_name,
                                                    config=storage.client_config)
    return _public_clients[cache_key]
