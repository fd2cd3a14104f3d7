"""Public pages: the certificate of a content id (no sign-in)."""
from django.http import Http404
from django.shortcuts import render

from rights.verification import Match, _contents_by_id, match_public


def certificate(request, content_id: str):
    contents = _contents_by_id(content_id=content_id[:16])
    if not contents:
        raise Http404("no such content")
    content = contents[0]
    return render(request, "rights/certificate.html", {
        "certificate": match_public(Match(content, "content_id", 1.0)), "content": content})
