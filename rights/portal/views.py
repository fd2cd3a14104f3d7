"""Portal pages of rights: the organization's assets (list, upload, detail with the rights panel),
and the public pages anyone may open without signing in: verification and the certificate.

They call what the API calls (rights/api/views.py): the same upload checks, services, verification code
path, limits and rate limit; nothing here decides anything the API does not."""
from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.decorators import requires_scope
from accounts.portal.base import form_refused, page_of, portal_actor
from config.api import error_body
from config.downloads import file_response
from config.error_codes import KernelErrors
from config.errors import DomainError
from rights import selectors as rights_selectors
from rights import verification
from rights.api.views import SHA256, VerifyRateThrottle, upload_to_file
from rights.error_codes import RightsErrors
from rights.models import Content
from rights.selectors import HELD, REJECTED, access_asset, content_rights, hold_state
from rights.services import asset_protect

# --- assets (members of the organization) -------------------------------------------------------


class AssetUploadForm(forms.Form):
    file = forms.FileField(label=gettext_lazy("Image, video or music"),
                           help_text=gettext_lazy("PNG, JPEG or MP4: watermarked, fingerprinted, signed and "
                                                  "registered on chain. WAV, MP3 or FLAC (a music track for "
                                                  "jobs): signed and registered."),
                           widget=forms.ClearableFileInput(attrs={
                               "accept": "image/png,image/jpeg,video/mp4,audio/wav,audio/mpeg,audio/flac"}))
    title = forms.CharField(label=gettext_lazy("Title"), max_length=200, required=False,
                            help_text=gettext_lazy("Private to your organization; never shown on public pages."))


def _assets():
    return rights_selectors.asset_list()  # the API's queryset too (rights.api.views.AssetListView)


def _wants_json(request) -> bool:
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"


def _asset_list_page(request, form, status=200):
    return render(request, "rights/asset_list.html", {
        "page": page_of(request, _assets()), "form": form,
        "max_mb": settings.VERIFY_MAX_BYTES // (1024 * 1024)}, status=status)


@requires_scope("rights:read")
def asset_list(request):
    return _asset_list_page(request, AssetUploadForm(auto_id="upload-%s"))


@require_POST
@requires_scope("rights:register")
def asset_upload(request):
    """POST /assets/upload: protect and register an uploaded image or video, as POST /api/v1/assets
    does. Answers JSON to the progress-bar script, a redirect or the form with errors otherwise."""
    form = AssetUploadForm(request.POST, request.FILES, auto_id="upload-%s")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.VERIFY_MAX_BYTES:
            raise DomainError(_("The file is too large."), code=KernelErrors.PAYLOAD_TOO_LARGE,
                              fields={"file": [_("The file is too large.")]})
        if not form.is_valid():
            raise DomainError(_("Choose an image or a video to upload."), fields=form.errors.get_json_data())
        content, infringements = _protect_upload(request, form.cleaned_data["title"])
    except DomainError as exc:
        if _wants_json(request):
            fields = {name: [e["message"] if isinstance(e, dict) else str(e) for e in problems]
                      for name, problems in (exc.fields or {}).items()}
            return JsonResponse(error_body(exc.code, exc.message, fields), status=exc.status)
        if form.is_bound and not form.errors:
            form_refused(form, exc)
        return _asset_list_page(request, form, status=exc.status)
    url = reverse("rights:asset-detail", kwargs={"asset_id": content.pk})
    held = bool(infringements)  # rights.services.asset_protect holds an upload that matches another's content
    if held:
        owners = ", ".join(sorted({match["owner"] for match in infringements}))
        messages.warning(request, _("Held before registration: this file matches content registered earlier by "
                                    "%(owners)s. It is not registered or public until an operator reviews it.")
                         % {"owners": owners})
    else:
        messages.success(request, _("Protected. Its registration is queued and will be anchored on chain shortly."))
    if _wants_json(request):
        return JsonResponse({"url": url, "content_id": content.content_id, "held": held}, status=201)
    return redirect(url)


def _protect_upload(request, title: str):
    """The same service as POST /api/v1/assets."""

    work = Path(tempfile.mkdtemp(prefix="asset-"))
    try:
        protected = asset_protect(organization=request.organization, path=upload_to_file(request, work),
                                  title=title or request.FILES["file"].name, user=request.user, work_dir=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return protected.content, protected.infringements


@requires_scope("rights:read")
def asset_detail(request, asset_id):
    """The asset and its rights; `?file=protected` serves the protected file itself (the preview)."""
    content = access_asset(portal_actor(request), asset_id)  # missing and foreign: the same 404
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    if request.GET.get("file") == "protected":
        return _asset_file(request, content)

    return render(request, "rights/asset_detail.html", {
        "content": content, "rights": content_rights(content=content, request=request),
        "file_served": bool(content.protected) and hold_state(content.rights_hold) not in (HELD, REJECTED)})


def _asset_file(request, content: Content):

    if not content.protected:
        raise Http404("no file")
    if hold_state(content.rights_hold) in (HELD, REJECTED):
        # The protected file carries a credential naming this organization: not while it is in question.
        raise Http404("held")
    extension = ({"video": "mp4", "audio": verification.AUDIO_SUFFIXES.get(content.mime_type, ".bin")[1:]}
                 .get(content.kind, "png"))
    return file_response(request, content.protected, content_type=content.mime_type or "application/octet-stream",
                         filename=f"{content.content_id}.{extension}")


# --- public: verification and the certificate ----------------------------------------------------


class VerifyForm(forms.Form):
    file = forms.FileField(label=gettext_lazy("File"), required=False,
                           widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg,video/mp4"}))
    sha256 = forms.CharField(label=gettext_lazy("or its SHA-256"), required=False, max_length=200,
                             widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false",
                                                           "placeholder": "e3b0c442…"}))


METHOD_LABELS = {
    "exact_hash": gettext_lazy("Exact file hash"),
    "c2pa": gettext_lazy("Content credential (C2PA)"),
    "watermark": gettext_lazy("Invisible watermark"),
    "fingerprint": gettext_lazy("Perceptual fingerprint"),
    "content_id": gettext_lazy("Content id"),
}


def _public(match: verification.Match) -> dict:
    shown = verification.match_public(match)
    shown["registered_at"] = datetime.fromisoformat(shown["registered_at"])
    shown["method_label"] = METHOD_LABELS.get(shown["method"], shown["method"])
    return shown


def _shown(entry: dict) -> dict:
    """An entry of the API's answer (verification_answer) as the page shows it: dates, method labels."""
    return {**entry, "registered_at": datetime.fromisoformat(entry["registered_at"]),
            "evidence": [{**found, "method_label": METHOD_LABELS.get(found["method"], found["method"])}
                         for found in entry["evidence"]]}


def verify(request):
    """Anyone: a file or a SHA-256 in, the verdict and evidence out, by the code path and under the
    limits of POST /api/v1/verify. The script (static/js/verify.js) gets the result fragment alone."""
    form = VerifyForm(initial={"sha256": request.GET.get("sha256", "")[:64]}, auto_id="verify-%s")
    context = {"max_mb": settings.VERIFY_MAX_BYTES // (1024 * 1024)}
    status, response_headers = 200, {}
    if request.method == "POST":
        form = VerifyForm(request.POST, request.FILES, auto_id="verify-%s")
        throttle = VerifyRateThrottle()
        try:
            if not throttle.allow_request(request, None):
                wait = max(1, int(throttle.wait() + 0.999))
                response_headers["Retry-After"] = str(wait)
                raise DomainError(_("Too many verifications from your address. Try again in %(seconds)d s.")
                                  % {"seconds": wait}, code=RightsErrors.THROTTLED)
            answer = verification.verification_answer(_verify_request(request))
            context["verdict"] = answer["verdict"]
            # The original, named as the owner, then later registrations with their relation to it.
            context["matches"] = [_shown(answer["original"])] if answer["original"] else []
            context["later_registrations"] = [_shown(entry) for entry in answer["later_registrations"]]
        except DomainError as exc:
            context["error"], status = exc, exc.status
            if getattr(exc, "retry_after", None):  # verify_busy: every decode slot was taken
                response_headers["Retry-After"] = str(exc.retry_after)
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    context["form"] = form
    template = "rights/_verify_result.html" if _wants_json(request) or request.htmx else "rights/verify.html"
    response = render(request, template, context, status=status)
    for name, value in response_headers.items():
        response[name] = value
    return response


def _verify_request(request) -> list[verification.Match]:
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > settings.VERIFY_MAX_BYTES:
        raise DomainError(_("Files over %(mb)d MB cannot be verified.") % {"mb": settings.VERIFY_MAX_BYTES // 2**20},
                          code=KernelErrors.PAYLOAD_TOO_LARGE)
    if request.FILES.get("file") is not None:
        work = Path(tempfile.mkdtemp(prefix="verify-"))
        try:
            return verification.verify_file(upload_to_file(request, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    sha256 = request.POST.get("sha256", "").strip()
    if not SHA256.match(sha256):
        raise DomainError(_("Give a file, or a SHA-256 as 64 hexadecimal characters."),
                          fields={"sha256": [_("64 hexadecimal characters")]})
    return verification.find_by_hash(sha256)


def certificate(request, content_id: str):
    try:  # public only while the registration is confirmed, as GET /api/v1/certificates/<id>
        content = verification.certificate_content(content_id)
    except DomainError:
        raise Http404("no such content") from None
    return render(request, "rights/certificate.html", {
        "certificate": _public(verification.Match(content, "content_id", 1.0)), "content": content})
