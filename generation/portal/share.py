"""The page a share link opens, for someone without an account: the shared version's player, its download
when the link allows it, and comments with a name and an email. Nothing else of the studio is shown: its
public name, the version number, and the comments made through this link.

The token in the URL is the capability (generation.review.share_open): an unknown token answers 404, an
expired or revoked one 410. A passphrase, when set, is asked once per browser session (post/redirect/get)."""
from __future__ import annotations

from django import forms
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View

from accounts.audit import client_ip
from config.downloads import file_response
from config.errors import DomainError, NotFound
from config.tenancy import tenant_scope
from generation import review
from generation.models import ShareAction


class PassphraseForm(forms.Form):
    passphrase = forms.CharField(label=gettext_lazy("Passphrase"), max_length=200, widget=forms.PasswordInput)


class GuestCommentForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Your name"), max_length=200)
    email = forms.EmailField(label=gettext_lazy("Your email"))
    time_s = forms.FloatField(label=gettext_lazy("At (seconds)"), min_value=0, required=False,
                              widget=forms.NumberInput(attrs={"step": "0.01"}))
    body = forms.CharField(label=gettext_lazy("Comment"), max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))


def _unlocked_key(link) -> str:
    return f"share-unlocked:{link.pk}"


class SharePortalPage(View):
    """Opens the link for every method: 404 unknown, 410 gone (the page says which), passphrase asked."""

    def dispatch(self, request, share_token: str, *args, **kwargs):
        token = share_token
        try:
            self.link = review.share_open(token)
        except review.Gone:
            return render(request, "generation/share_gone.html", status=410)
        except NotFound:
            return render(request, "404.html", status=404)
        self.token = token
        self.ip, self.agent = client_ip(request), request.headers.get("User-Agent", "")
        with tenant_scope(self.link.organization_id):
            return super().dispatch(request, *args, **kwargs)

    def unlocked(self) -> bool:
        return not self.link.passphrase_hash or self.request.session.get(_unlocked_key(self.link)) is True

    def page_url(self) -> str:
        return reverse("jobs:share-page", args=[self.token])

    def context(self, **extra) -> dict:
        link = self.link
        version = review.share_version(link)
        return {"link": link, "token": self.token, "version": version,
                "studio": link.organization.public_name, "comments": review.comments_of(
                    link.job, share_link=link), "comment_form": GuestCommentForm(), **extra}


class SharePage(SharePortalPage):
    def get(self, request):
        token = self.token
        if not self.unlocked():
            return render(request, "generation/share_passphrase.html", {"form": PassphraseForm(), "token": token})
        try:
            context = self.context()
        except DomainError as exc:  # no version composed yet
            return render(request, "generation/share_gone.html", {"message": str(exc)}, status=409)
        review.share_log(self.link, ShareAction.VIEW, ip=self.ip, user_agent=self.agent)
        return render(request, "generation/share.html", context)

    def post(self, request):
        token = self.token
        form = PassphraseForm(request.POST)
        status, response_headers = 400, {}
        if form.is_valid():
            try:
                review.share_passphrase_check(self.link, form.cleaned_data["passphrase"], ip=self.ip,
                                              user_agent=self.agent)
                request.session[_unlocked_key(self.link)] = True
                return HttpResponseRedirect(self.page_url())
            except DomainError as exc:
                form.add_error("passphrase", str(exc))
                status = exc.status
                if getattr(exc, "retry_after", None):
                    response_headers["Retry-After"] = str(exc.retry_after)
        response = render(request, "generation/share_passphrase.html", {"form": form, "token": token}, status=status)
        for name, value in response_headers.items():
            response[name] = value
        return response


class ShareVideoPage(SharePortalPage):
    """The link's own copy of the version (made once per link and version, forensically marked); with
    ?download=1 saved as `<title> v<N>.mp4`, when the link allows downloads (logged)."""

    def get(self, request):
        if not self.unlocked():
            return render(request, "generation/share_passphrase.html", {"form": PassphraseForm(), "token": self.token},
                          status=403)
        download = request.GET.get("download") == "1"
        if download and not self.link.allow_download:
            return render(request, "403.html", {"message": _("This link does not allow downloads.")}, status=403)
        version = review.share_version(self.link)
        copy = review.share_copy(self.link, version)
        if download and "Range" not in request.headers:
            review.share_log(self.link, ShareAction.DOWNLOAD, ip=self.ip, user_agent=self.agent)
        return file_response(request, copy.file, content_type="video/mp4",
                             filename=review.version_download_name(self.link.job, version))


class ShareCommentPage(SharePortalPage):
    def post(self, request):
        if not self.unlocked():
            return HttpResponseRedirect(self.page_url())
        if not self.link.allow_comments:
            return render(request, "403.html", {"message": _("This link does not take comments.")}, status=403)
        form = GuestCommentForm(request.POST)
        if form.is_valid():
            try:
                review.comment_create(job=self.link.job, actor=None, body=form.cleaned_data["body"],
                                      time_s=form.cleaned_data["time_s"], share_link=self.link,
                                      author_name=form.cleaned_data["name"], author_email=form.cleaned_data["email"])
            except DomainError as exc:
                form.add_error(None, str(exc))
            else:
                review.share_log(self.link, ShareAction.COMMENT, ip=self.ip, user_agent=self.agent)
                return HttpResponseRedirect(self.page_url() + "#comments")
        return render(request, "generation/share.html", self.context(comment_form=form), status=400)

