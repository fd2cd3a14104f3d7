"""Public verification (`POST /api/v1/verify`) and the public certificate of a content id."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, parsers, serializers, status
from rest_framework.response import Response

from accounts.api.base import OrganizationAPIView, PublicAPIView
from accounts.api.permissions import PUBLIC
from accounts.api.throttling import PlatformRateThrottle, rate_hit
from accounts.audit import client_ip
from config.error_codes import KernelErrors
from config.errors import DomainError
from config.json_input import INVALID_TYPE, type_error
from config.parsers import JSONParser
from rights import verification
from rights.error_codes import RightsErrors
from rights.models import Content
from rights.selectors import access_asset, asset_list, content_rights
from rights.services import asset_protect

SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def upload_to_file(request, work: Path) -> Path:
    """The multipart `file` written to `work/upload`, refused when missing or over the size limit."""
    upload = request.FILES.get("file")
    if upload is None:
        raise DomainError("Send the file in a `file` field.", fields={"file": ["required"]})
    if upload.size > settings.VERIFY_MAX_BYTES:
        raise DomainError("The file is too large.", code=KernelErrors.PAYLOAD_TOO_LARGE)
    path = work / "upload"
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return path


class VerifyRateThrottle(PlatformRateThrottle):
    """Verification decodes media: a tighter limit per address on top of the general one."""

    def allow_request(self, request, view) -> bool:
        self._wait = rate_hit("verify", client_ip(request) or "unknown", settings.API_RATE_LIMITS["verify"])
        return self._wait == 0


# The request bodies as the views read them: a multipart `file`, or JSON with a `sha256`.
UPLOAD = {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}
VERIFY_HASH = {"type": "object", "required": ["sha256"],
               "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}}


class VerifyView(PublicAPIView):
    """Anyone: upload an image or video (multipart `file`) or give `{"sha256": ...}`; learn who
    registered it, by which evidence, with the on-chain proof checked now. Only confirmed registrations
    are named: `owner` and `original` are the earliest one found, `matches` its evidence, and any later
    registration of the same picture is under `later_registrations` with its `relation`
    (rights.verification.verification_answer)."""

    required_scopes = {"POST": PUBLIC}
    # too large (the file, or what its headers declare); not a PNG, JPEG or MP4 or an unexpected stream
    # layout; busy (every decode slot taken, Retry-After) or over the time budget
    error_codes = {"POST": (KernelErrors.PAYLOAD_TOO_LARGE, KernelErrors.MEDIA_TOO_LARGE, RightsErrors.IMAGE_TOO_LARGE,
                            RightsErrors.UNSUPPORTED_TYPE, KernelErrors.MEDIA_UNEXPECTED_LAYOUT,
                            RightsErrors.EMPTY_FILE, KernelErrors.UNREADABLE_FILE, KernelErrors.MEDIA_UNPROCESSABLE,
                            KernelErrors.VERIFY_BUSY, KernelErrors.MEDIA_TIMEOUT)}
    parser_classes = [JSONParser, parsers.MultiPartParser]
    throttle_classes = [VerifyRateThrottle]

    @extend_schema(request={"application/json": VERIFY_HASH, "multipart/form-data": UPLOAD},
                   responses=OpenApiTypes.OBJECT)
    def post(self, request):
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.VERIFY_MAX_BYTES:
            raise DomainError(f"Files over {settings.VERIFY_MAX_BYTES // (1024 * 1024)} MB cannot be verified.",
                              code=KernelErrors.PAYLOAD_TOO_LARGE)
        if request.content_type.startswith("multipart/"):
            work = Path(tempfile.mkdtemp(prefix="verify-"))
            try:
                matches = verification.verify_file(upload_to_file(request, work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
        else:
            data = request.data if isinstance(request.data, dict) else {}
            sha256 = data.get("sha256", "")
            if not isinstance(sha256, str):  # a JSON type is checked as the serializers do (config.json_input)
                raise DomainError("Some fields have the wrong JSON type; `error.fields` names them.",
                                  code=INVALID_TYPE, fields={"sha256": type_error("a string", sha256)})
            sha256 = sha256.strip()
            if not SHA256.match(sha256):
                raise DomainError("Give a file, or a SHA-256 as 64 hexadecimal characters.",
                                  fields={"sha256": ["64 hexadecimal characters"]})
            matches = verification.find_by_hash(sha256)
        return Response(verification.verification_answer(matches))


class CertificateView(PublicAPIView):
    """The public facts of one content id, as JSON (the portal renders the same as a page)."""

    required_scopes = {"GET": PUBLIC}

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, content_id: str):
        content = verification.certificate_content(content_id)
        return Response(verification.match_public(verification.Match(content, "content_id", 1.0)))


# --- uploads of existing assets (members, scoped) ------------------------------------------------



class AssetOut(serializers.ModelSerializer):
    rights = serializers.SerializerMethodField()

    class Meta:
        model = Content
        fields = ["id", "content_id", "kind", "source", "title", "mime_type", "width", "height", "duration_s",
                  "created_at", "rights"]

    def get_rights(self, content) -> dict:
        return content_rights(content=content, request=self.context.get("request"))


def hold_message(infringements: list[dict]) -> str:
    owners = ", ".join(sorted({match["owner"] for match in infringements}))
    return (f"Held before registration: this file matches content registered earlier by {owners}. It is not "
            "registered or public until an operator reviews it.")


class AssetListView(mixins.ListModelMixin, OrganizationAPIView):
    """Protect and register an existing image or video (multipart `file`, optional `title`): watermarked,
    fingerprinted, signed and registered. A WAV, MP3 or FLAC file (a music track a job's bed can be) is
    signed and registered; audio carries no frames to watermark or fingerprint."""

    required_scopes = {"GET": "rights:read", "POST": "rights:register"}
    error_codes = {"POST": (KernelErrors.PAYLOAD_TOO_LARGE, KernelErrors.MEDIA_TOO_LARGE, RightsErrors.IMAGE_TOO_LARGE,
                            RightsErrors.UNSUPPORTED_TYPE, KernelErrors.MEDIA_UNEXPECTED_LAYOUT,
                            RightsErrors.EMPTY_FILE, RightsErrors.TOO_SMALL, KernelErrors.UNREADABLE_FILE, KernelErrors.MEDIA_UNPROCESSABLE,
                            KernelErrors.MEDIA_TIMEOUT)}
    serializer_class = AssetOut
    parser_classes = [parsers.MultiPartParser]

    def get_queryset(self):
        return asset_list()

    def get(self, request):
        return self.list(request)

    @extend_schema(request={"multipart/form-data": {**UPLOAD, "properties": {
        **UPLOAD["properties"], "title": {"type": "string", "description": "Defaults to the file's name"}}}},
        responses={201: AssetOut})
    def post(self, request):
        work = Path(tempfile.mkdtemp(prefix="asset-"))
        try:
            path = upload_to_file(request, work)
            protected = asset_protect(
                organization=request.organization, path=path, work_dir=work,
                title=str(request.data.get("title", request.FILES["file"].name)),
                user=request.user if request.user.is_authenticated else None)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        content = self.get_queryset().get(pk=protected.content.pk)
        body = AssetOut(content, context={"request": request}).data
        body["infringements"] = protected.infringements
        # Held (rights.services.asset_protect): not registered nor public until an operator decides.
        body["held"] = protected.held
        if protected.held:
            body["hold_message"] = hold_message(protected.infringements)
        return Response(body, status=status.HTTP_201_CREATED)


class AssetDetailView(OrganizationAPIView):
    required_scopes = {"GET": "rights:read"}
    serializer_class = AssetOut

    def get(self, request, asset_id):
        content = access_asset(request.actor, asset_id)
        return Response(AssetOut(content, context={"request": request}).data)
