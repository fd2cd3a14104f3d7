"""The review fragment of the job page (generation/portal/jobs.py job_context includes it): its forms and
what it shows. Apart from the review pages (generation/portal/review.py) so that the job page can show it
without importing the pages that act on it."""
from __future__ import annotations

import json

from django import forms
from django.utils.translation import gettext_lazy

from generation import review
from generation.pipeline import steps as pipeline

CREATED_LINK_KEY = "share-link-created"


class CommentForm(forms.Form):
    body = forms.CharField(label=gettext_lazy("Comment"), max_length=review.COMMENT_MAX,
                           widget=forms.Textarea(attrs={"rows": 3}))
    time_s = forms.FloatField(label=gettext_lazy("At (seconds)"), min_value=0, required=False,
                              widget=forms.NumberInput(attrs={"step": "0.001"}))
    shot = forms.IntegerField(label=gettext_lazy("Shot"), min_value=1, required=False)
    region = forms.CharField(required=False, widget=forms.HiddenInput)
    parent = forms.UUIDField(required=False, widget=forms.HiddenInput)
    version = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


class ShareLinkForm(forms.Form):
    recipient = forms.CharField(label=gettext_lazy("For"), max_length=200)
    passphrase = forms.CharField(label=gettext_lazy("Passphrase (optional)"), required=False, max_length=200,
                                 widget=forms.PasswordInput(render_value=False))
    expires_in_hours = forms.FloatField(label=gettext_lazy("Expires in (hours, optional)"), required=False,
                                        min_value=0.001, max_value=24 * 365)
    allow_download = forms.BooleanField(label=gettext_lazy("Allow download"), required=False)
    allow_comments = forms.BooleanField(label=gettext_lazy("Allow comments"), required=False, initial=True)
    visible_watermark = forms.BooleanField(label=gettext_lazy("Visible 'DRAFT' line"), required=False, initial=True)


def review_context(request, job) -> dict:
    """What the review fragment shows: the decision state, the version stack, the comments (threads in
    order, open ones per shot for the storyboard), the share links. A fixed number of queries."""
    versions = list(job.versions.select_related("artifact", "created_by").prefetch_related("decisions")
                    .order_by("-number"))
    assigned = review.reviewers_assigned(job)
    current = versions[0] if versions else None
    comments = review.comments_of(job)
    open_by_shot: dict = {}
    for comment in comments:
        if comment.parent_id is None and comment.resolved_at is None and comment.shot:
            open_by_shot.setdefault(comment.shot, []).append(comment)
    fps = int(job.options.get("fps") or 24)
    for comment in comments:
        comment.time_s = round(comment.frame / fps, 3) if comment.frame is not None else None
        comment.region_json = json.dumps(comment.region) if comment.region else ""
    scopes = request.scopes
    waiting = job.status in ("awaiting_approval", "changes_requested")
    links = list(job.share_links.select_related("version")) if "share:manage" in scopes else []
    for link in links:
        link.state = review.share_link_state(link)
    return {
        "versions": versions, "current_version": current,
        "approval": review.approval_state(job, current, assigned=assigned),
        "reviewers": sorted(assigned.values()),
        "comments": comments, "open_by_shot": open_by_shot,
        "can_comment": "review:comment" in scopes and current is not None,
        "can_decide": "job:approve" in scopes and waiting and current is not None
        and not pipeline.rights_on_hold(job),
        "can_restore": "job:create" in scopes and job.status != "cancelled",
        "can_share": "share:manage" in scopes and current is not None,
        # The forms stay on the page as it was loaded (the live refresh leaves them alone): shown by scope, so
        # a page opened before the first version still offers them once it exists.
        "may_comment": "review:comment" in scopes, "may_share": "share:manage" in scopes,
        "share_links": links,
        "comment_form": CommentForm(), "share_form": ShareLinkForm(),
        "created_link": request.session.pop(CREATED_LINK_KEY, None) if hasattr(request, "session") else None,
    }


