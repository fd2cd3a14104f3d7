"""Portal pages of a job's review and delivery: comments (pinned to a frame, a shot and a drawn box),
resolve and reopen, request changes, restore a version, a version's video, share links (created,
revoked, and their access log), and the member's notifications. They act through generation.review and
generation.services with the API's scopes (generation/api/review.py); a created share link's URL is
shown once, through the session (post/redirect/get)."""
from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.decorators import requires_scope
from accounts.portal.base import portal_actor
from config.downloads import file_response
from config.errors import DomainError
from config.tenancy import scoped_object
from generation import review, selectors, services
from generation.models import ShareLink
from generation.pipeline import steps as pipeline
from generation.portal.jobs import JobActionPage, JobPortalPage
from generation.portal.review_fragments import CREATED_LINK_KEY, CommentForm, ShareLinkForm

class CommentPage(JobActionPage):
    scope = "review:comment"

    def act(self, request, job, **kwargs):
        form = CommentForm(request.POST)
        if not form.is_valid():
            raise DomainError(_("The comment is invalid: %(errors)s") % {"errors": form.errors.as_text()})
        values = form.cleaned_data
        region = None
        if values["region"]:
            try:
                region = json.loads(values["region"])
            except ValueError:
                raise DomainError(_("The drawn region could not be read.")) from None
        review.comment_create(job=job, actor=portal_actor(request), body=values["body"], time_s=values["time_s"],
                              shot=values["shot"], region=region, parent=values["parent"], version=values["version"])
        messages.success(request, _("Comment added."))

    def anchor(self, **kwargs):
        return "#job-review"


class CommentResolvePage(JobActionPage):
    scope = "review:comment"
    resolved = True

    def act(self, request, job, comment_id=None, **kwargs):
        comment = scoped_object(job.comments.select_related("job", "version"), comment_id, what="comment")
        review.comment_resolve(comment=comment, actor=portal_actor(request), resolved=self.resolved)

    def anchor(self, **kwargs):
        return "#job-review"


class CommentReopenPage(CommentResolvePage):
    resolved = False


class RequestChangesPage(JobActionPage):
    scope = "job:approve"
    done_message = gettext_lazy("Changes requested: the producer sees your comments on the shots.")

    def act(self, request, job, **kwargs):
        services.job_request_changes(job=job, actor=portal_actor(request), note=request.POST.get("note", "")[:2000])


class VersionRestorePage(JobActionPage):
    def act(self, request, job, version=0, **kwargs):
        services.version_restore(job=job, number=version, actor=portal_actor(request))
        messages.success(request, _("v%(number)d is being restored as a new version.") % {"number": version})


class VersionVideoPage(JobPortalPage):
    """One version's video for the compare view, and its download named `<job title> v<N>.mp4`."""

    def get(self, request, job_id, version):
        job = self.job(job_id)
        if pipeline.rights_on_hold(job):
            return HttpResponse(selectors.RightsHeld().message, status=409, content_type="text/plain; charset=utf-8")
        try:
            found = review.version_get(job, version)
        except DomainError:
            raise Http404("no such version") from None
        return file_response(request, review.version_file(found), content_type="video/mp4",
                             filename=review.version_download_name(job, found))


class ShareLinkCreatePage(JobActionPage):
    scope = "share:manage"

    def act(self, request, job, **kwargs):
        form = ShareLinkForm(request.POST)
        if not form.is_valid():
            raise DomainError(_("The share link is invalid: %(errors)s") % {"errors": form.errors.as_text()})
        link, token = review.share_link_create(job=job, actor=portal_actor(request), **form.cleaned_data)
        request.session[CREATED_LINK_KEY] = {"url": request.build_absolute_uri(
            reverse("jobs:share-page", args=[token])), "recipient": link.recipient}

    def anchor(self, **kwargs):
        return "#job-share"


def _link(job, link_id) -> ShareLink:
    return scoped_object(job.share_links.select_related("version", "created_by"), link_id, what="share link")


class ShareLinkRevokePage(JobActionPage):
    scope = "share:manage"
    done_message = gettext_lazy("The link was revoked: it answers 410 from now on.")

    def act(self, request, job, link_id=None, **kwargs):
        review.share_link_revoke(link=_link(job, link_id), actor=portal_actor(request))

    def anchor(self, **kwargs):
        return "#job-share"


class ShareLinkLogPage(JobPortalPage):
    """Every view, download, comment and wrong passphrase through one link, newest first."""

    scope = "share:manage"

    def get(self, request, job_id, link_id):
        job = self.job(job_id)
        link = _link(job, link_id)
        link.state = review.share_link_state(link)
        return render(request, "generation/share_log.html", {
            "job": job, "link": link, "accesses": list(link.accesses.order_by("-id")[:500])})


@requires_scope("job:read")
def notifications(request):
    """The signed-in member's notifications, newest first; opening the page marks them read."""
    found = review.notifications_for(request.user, limit=100)
    unread = {n.pk for n in found if n.read_at is None}
    review.notifications_read(request.user)
    return render(request, "generation/notifications.html", {"notifications": found, "unread": unread})
