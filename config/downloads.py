"""Access-checked file responses: local files streamed with HTTP range support (video players seek
with ranges); files in S3 as a redirect to a short-lived signed link (S3 serves the ranges)."""
from __future__ import annotations

import re

from django.http import FileResponse, HttpResponse, HttpResponseRedirect, StreamingHttpResponse

from config.storage import signed_download_url

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 256 * 1024


def _chunks(handle, start: int, length: int):
    handle.seek(start)
    remaining = length
    try:
        while remaining > 0:
            data = handle.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        handle.close()


def file_response(request, field_file, *, content_type: str, filename: str):
    """The file for a request that the calling view has already allowed (scope and tenant checked):
    whoever gets this answer can read the file, through the link for the link's lifetime."""
    # ?download=1: saved, not shown. The <a download> attribute alone is ignored once a redirect leaves
    # the site (S3), so the answer itself says so.
    disposition = "attachment" if request.GET.get("download") == "1" else "inline"
    url = signed_download_url(field_file, filename=filename, content_type=content_type, disposition=disposition)
    if url is not None:
        response = HttpResponseRedirect(url)
        response["Cache-Control"] = "private, no-store"  # a link outliving its signature is no use to a cache
        return response
    size = field_file.size
    header = request.headers.get("Range", "")
    match = RANGE.match(header.strip()) if header else None
    if header and not match:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    if match:
        first, last = match.groups()
        if first == "":
            start, end = max(0, size - int(last or 0)), size - 1
        else:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        if start > end or start >= size:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        response = StreamingHttpResponse(_chunks(field_file.open("rb"), start, end - start + 1), status=206,
                                         content_type=content_type)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    else:
        response = FileResponse(field_file.open("rb"), content_type=content_type)
        response["Content-Length"] = str(size)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    response["Cache-Control"] = "private, max-age=3600"
    return response
