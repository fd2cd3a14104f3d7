"""Tenant isolation, proved three ways.

1. The URL walk: every route of the project (API and portal) is requested by organization B,
   by its owner's session and by its all-scopes API key, with organization A's ids in every path
   parameter and with every HTTP method the view handles. Each answer must be a 404 that says
   nothing about A. A route with a path parameter this file doesn't know fails the walk, so a
   new endpoint can't skip it.
2. Fail-closed scoping in the ORM: no scope, no query; another tenant's scope, no write.
3. PostgreSQL row level security: a raw SQL query, which the ORM's scoping never sees, still
   sees only the scoped organization's rows (and nothing without a scope).
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern
from django.utils import timezone

from accounts import services
from accounts.audit import Actor
from accounts.models import ApiKey, AuditEntry, Invitation, Membership
from config.tenancy import ScopeError, dangerously_unscoped, tenant_models, tenant_scope
from generation.models import ProviderCredential, Webhook
from projects.models import Project

# --- the objects of each organization ---------------------------------------------------------


@dataclass
class Objects:
    """One organization's objects that URLs can name, and the strings that identify it."""

    project: Project
    membership: Membership  # a non-owner member, so that a leaked DELETE would really remove it
    invitation: Invitation
    token: str
    api_key: ApiKey
    job: object = None
    webhook: object = None
    template: object = None
    content: object = None
    comment: object = None
    share_link: object = None
    share_token: str = ""
    identifying: list[str] = field(default_factory=list)


def populate(tenant, label: str) -> Objects:
    project = tenant.project(name=f"{label} Secret Pilot", description=f"{label} confidential treatment")
    viewer = tenant.member("viewer")
    api_key, _plain = tenant.key()
    with tenant_scope(tenant.organization):
        membership = Membership.objects.get(user=viewer)
        invitation, token = services.invitation_create(
            organization=tenant.organization, email=f"invitee@{tenant.slug}.test", role="viewer",
            actor=Actor(user=tenant.owner),
        )
        memberships = list(Membership.objects.filter(organization=tenant.organization).select_related("user"))
        job = finished_job(tenant, project, label)
        from projects.templates import template_create

        template = template_create(organization=tenant.organization, name=f"{label} private template",
                                   description=f"{label} template notes",
                                   settings={"prompts": {"script": f"{label} house prompt"}},
                                   actor=Actor(user=tenant.owner))
        from rights.models import Content, Registration

        ProviderCredential.objects.create(organization=tenant.organization, provider="openai",
                                          settings={"base_url": f"https://{tenant.slug}.llm.example/v1"})

        content = Content.objects.create(organization=tenant.organization, content_id=f"{label[:4].upper()}2345",
                                         kind="video", source="generated", job=job,
                                         title=f"{label} private content title", sha256=label[0].lower() * 64)
        # Its certificate is public: a confirmed registration (a pending one is not public yet).
        Registration.objects.create(organization=tenant.organization, content=content, leaf="0x" + "2" * 64,
                                    status="confirmed")
        webhook = Webhook.objects.create(organization=tenant.organization, url=f"https://{tenant.slug}.example/hook",
                                         events=["job.completed"], secret_encrypted="x")
        # Review and delivery: the job's v1, a comment on it, a share link with its log.
        from generation import review
        from generation.models import ShareAccess

        comment = review.comment_create(job=job, actor=Actor(user=tenant.owner), body=f"{label} private remark",
                                        frame=3, shot=1)
        share_link, share_token = review.share_link_create(job=job, actor=Actor(user=tenant.owner),
                                                           recipient=f"{label} private client")
        ShareAccess.objects.create(organization=tenant.organization, link=share_link, action="view")
    identifying = [
        str(comment.id),
        comment.body,
        str(share_link.id),
        str(job.id),
        job.topic,
        str(webhook.id),
        webhook.url,
        f"https://{tenant.slug}.llm.example/v1",
        str(template.id),
        template.name,
        template.description,
        f"{label} house prompt",
        tenant.slug,
        tenant.organization.name,
        project.name,
        project.description,
        str(project.id),
        str(invitation.id),
        invitation.email,
        token,
        str(api_key.id),
        api_key.prefix,
    ]
    for member in memberships:
        identifying += [str(member.id), member.user.email]
    return Objects(project, membership, invitation, token, api_key, job, webhook, template, content, comment,
                   share_link, share_token, identifying)


def finished_job(tenant, project, label: str):
    """A completed job with its storyboard, a frame, the video and the thumbnail as artifacts, made
    directly (the pipeline itself is tested in generation/tests), so every job URL has content."""
    from django.core.files.base import ContentFile

    from generation.models import Artifact, Job, JobStatus, Stage, StepStatus
    from generation.pipeline.steps import steps_create

    job = Job.objects.create(organization=tenant.organization, project=project, topic=f"{label} secret topic",
                             options={"duration_s": 10, "aspect_ratio": "16:9", "resolution": "480p", "shots": 1,
                                      "voice": "", "fps": 24}, status=JobStatus.COMPLETED)
    steps_create(job)
    shot = {"number": 1, "description": f"{label} shot", "dialogue": "", "camera_movement": "static",
            "shot_type": "wide", "duration_s": 10, "composition": "", "lighting": ""}

    def artifact(kind, name, content=b"", data=None):
        made = Artifact(organization=tenant.organization, digest=f"{label}-{name}".ljust(64, "0"), kind=kind,
                        content_hash=name, data=data)
        if content:
            made.file.save(name, ContentFile(content), save=False)
        made.save()
        return made

    storyboard = artifact("json", "storyboard", data={"shots": [shot]})
    frame = artifact("image", "frame.png", b"\x89PNG fake")
    srt = artifact("subtitles", "subtitles.srt", f"1\n00:00:00,000 --> 00:00:02,000\n{label} line\n".encode())
    vtt = artifact("subtitles", "subtitles.vtt", f"WEBVTT\n\n00:00.000 --> 00:02.000\n{label} line\n".encode())
    video = artifact("video", "video.mp4", b"\x00\x00\x00\x18ftypmp42 fake video",
                     data={"subtitle_artifacts": {"srt": str(srt.pk), "vtt": str(vtt.pk)}})
    thumbnail = artifact("image", "thumb.jpg", b"\xff\xd8 fake jpeg")
    job.steps.filter(stage=Stage.STORYBOARD).update(status=StepStatus.SUCCEEDED, artifact=storyboard)
    job.steps.filter(stage=Stage.FRAME).update(status=StepStatus.SUCCEEDED, artifact=frame)
    job.steps.filter(stage=Stage.COMPOSE).update(status=StepStatus.SUCCEEDED, artifact=video)
    job.output = {"video_artifact": str(video.pk), "thumbnail_artifact": str(thumbnail.pk), "metadata": {}}
    job.save(update_fields=["output"])
    from generation.models import JobVersion

    JobVersion.objects.create(organization=tenant.organization, job=job, number=1, artifact=video)
    return job


# Path parameter -> organization A's value for it. Every path parameter of every route must be
# here: the walk fails on one that is missing, so a new endpoint is walked from its first day.
A_VALUE_FOR_KWARG: dict[str, Callable[[Objects], object]] = {
    "project_id": lambda a: a.project.id,
    "member_id": lambda a: a.membership.id,
    "invitation_id": lambda a: a.invitation.id,
    "api_key_id": lambda a: a.api_key.id,
    "token": lambda a: a.token,
    "job_id": lambda a: a.job.id,
    "number": lambda a: 1,
    "webhook_id": lambda a: a.webhook.id,
    "template_id": lambda a: a.template.id,
    "version": lambda a: 1,
    "content_id": lambda a: a.content.content_id,
    "asset_id": lambda a: a.content.id,
    "provider": lambda a: "openai",
    "comment_id": lambda a: a.comment.id,
    "link_id": lambda a: a.share_link.id,
    "share_token": lambda a: a.share_token,
    "voice": lambda a: "en",
}

# --- the URL walk ------------------------------------------------------------------------------

SKIPPED_PREFIXES = ("admin/", "static/")
SKIPPED_NAMES = {"api:unknown"}  # the API's catch-all 404
HANDLER_METHODS = ("get", "post", "put", "patch", "delete")
PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")

# Routes that must appear in the walk; guards against a walker that silently finds nothing.
EXPECTED_ROUTES = {
    "api:project-list", "api:project-detail", "api:organization", "api:member-list", "api:member-detail",
    "api:invitation-list", "api:invitation-detail", "api:invitation-accept", "api:apikey-list",
    "api:apikey-detail", "api:audit-log", "accounts:dashboard", "accounts:invitation-accept", "api:job-list",
    "api:job-detail", "api:job-video", "api:job-shot", "api:webhook-list", "api:webhook-detail",
    "api:webhook-deliveries", "api:template-list", "api:template-detail", "api:template-version",
    "api:template-duplicate",
    "projects:project-detail",
}
# Param-less routes that show tenant data to their own tenant: the leak check on them must be
# able to fail, so A's own client has to see A's data there.
TENANT_DATA_ROUTES = {
    "api:project-list", "api:organization", "api:member-list", "api:invitation-list", "api:apikey-list",
    "api:audit-log", "accounts:dashboard", "api:job-list", "api:webhook-list",
    "api:template-list",
}
WRITE_BODY = {
    "name": "Hijacked by B", "public_name": "Hijacked by B", "description": "hijacked", "role": "viewer",
    "email": "hijack@studio-b.test", "scopes": ["project:read"], "token": "x" * 43,
}


@dataclass
class Route:
    route: str  # the full route, e.g. "api/v1/projects/<uuid:project_id>"
    name: str  # namespaced, e.g. "api:project-detail"
    callback: Callable
    kwargs: list[str]

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")

    def methods(self) -> list[str]:
        view_class = getattr(self.callback, "cls", None) or getattr(self.callback, "view_class", None)
        if view_class is None:  # a function view: whatever it does with GET and POST
            return ["GET", "POST"]
        return [method.upper() for method in HANDLER_METHODS if hasattr(view_class, method)]

    def url(self, values: dict[str, object]) -> str:
        return "/" + PARAMETER.sub(lambda match: str(values[match.group("name")]), self.route)


def walk(resolver=None, prefix: str = "", namespace: str = "") -> Iterator[Route]:
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if route.startswith(SKIPPED_PREFIXES):
            continue
        if isinstance(entry, URLResolver):
            inner = ":".join(part for part in (namespace, entry.namespace) if part)
            yield from walk(entry, route, inner)
            continue
        assert isinstance(entry, URLPattern)
        name = f"{namespace}:{entry.name}" if namespace and entry.name else (entry.name or route)
        if name in SKIPPED_NAMES:
            continue
        assert isinstance(entry.pattern, RoutePattern), (
            f"{route!r} ({name}) is a regex route; the isolation walk can only build paths for path() "
            "routes: use path(), or teach this walk the new route"
        )
        yield Route(route, name, entry.callback, [m.group("name") for m in PARAMETER.finditer(route)])


def routes_to_walk(*, api_only: bool) -> list[Route]:
    routes = [route for route in walk() if route.is_api or not api_only]
    names = {route.name for route in routes}
    missing = (EXPECTED_ROUTES if not api_only else {n for n in EXPECTED_ROUTES if n.startswith("api:")}) - names
    assert not missing, f"the walk did not find {sorted(missing)}: is the walker broken?"
    unknown = sorted({f"{route.route} ({kwarg})" for route in routes for kwarg in route.kwargs
                      if kwarg not in A_VALUE_FOR_KWARG})
    assert not unknown, (
        f"routes with path parameters the isolation walk doesn't know: {unknown}. Add each parameter to "
        "A_VALUE_FOR_KWARG with organization A's value for it, so the endpoint is walked."
    )
    return routes


def request(client, method: str, url: str, *, api: bool):
    if method == "GET":
        return client.get(url)
    if method == "DELETE":
        return client.delete(url)
    send = getattr(client, method.lower())
    return send(url, WRITE_BODY, format="json" if api else "multipart")


def leaks(response, a: Objects) -> list[str]:
    body = response.content.decode(errors="replace")
    return [marker for marker in a.identifying if marker in body]


def assert_a_untouched(tenant_a, a: Objects) -> None:
    with tenant_scope(tenant_a.organization):
        project = Project.objects.get(pk=a.project.pk)
        assert (project.name, project.description) == (a.project.name, a.project.description)
        assert Membership.objects.get(pk=a.membership.pk).role == "viewer"
        assert Invitation.objects.get(pk=a.invitation.pk).status == "pending"
        assert ApiKey.objects.get(pk=a.api_key.pk).revoked_at is None
        from generation.models import Job

        job = Job.objects.get(pk=a.job.pk)
        assert (job.status, job.shot_edits) == ("completed", {})
        from projects.models import Template

        template = Template.objects.get(pk=a.template.pk)
        assert (template.name, template.current_version) == (a.template.name, 1)
        webhook = Webhook.objects.get(pk=a.webhook.pk)
        assert (webhook.url, webhook.is_active) == (a.webhook.url, True)
        assert not Membership.objects.filter(user__email__endswith="@studio-b.test").exists()
        assert not AuditEntry.objects.filter(actor_email__endswith="@studio-b.test").exists()


def check_invitation_token_page(route: Route, client_b, tenant_a, tenant_b, a: Objects) -> list[str]:
    """The portal's invitation page takes the invitation token itself, not an id: the token is the
    credential (anyone holding the mailed link may see whom it invites and accept it if it was sent
    to them), so a 404 for B would be wrong. What must hold is that holding A's link gives B's
    member nothing: accepting A's invitation, sent to another address, is refused and no
    membership is created."""
    failures = []
    url = route.url({"token": a.token})
    shown = client_b.get(url)
    if shown.status_code != 200:  # the token is real and pending, or the check below proves nothing
        failures.append(f"GET {url}: A's pending invitation should show, got {shown.status_code}")
    accepted = client_b.post(url, {"full_name": "B owner", "password": ""}, format="multipart")
    if accepted.status_code in (301, 302, 303) or accepted.status_code >= 500:
        failures.append(f"POST {url}: B's member accepting A's invitation got {accepted.status_code}")
    elif "This invitation was sent to another email address." not in accepted.content.decode():
        failures.append(f"POST {url}: the refusal (invitation_email_mismatch) is not shown")
    # The same acceptance through the API answers the refusal's code.
    api = client_b.post("/api/v1/invitations/accept", {"token": a.token}, format="json")
    if api.status_code != 403 or api.json()["error"]["code"] != "invitation_email_mismatch":
        failures.append(f"POST /api/v1/invitations/accept with A's token: {api.status_code} {api.content[:200]!r}")
    with tenant_scope(tenant_a.organization):
        if Membership.objects.filter(user=tenant_b.owner).exists():
            failures.append("B's owner became a member of A through A's invitation")
        if Invitation.objects.get(pk=a.invitation.pk).status != "pending":
            failures.append("A's invitation was used up by B's owner")
    return failures


def check_public_certificate(route: Route, client_b, tenant_a, tenant_b, a: Objects) -> list[str]:
    """A content's certificate is public by design (anyone may ask who owns it): B gets it, but it
    must name only the content id and the owner's public name and slug, nothing private of A's."""
    failures = []
    response = client_b.get(route.url({"content_id": a.content.content_id}))
    if response.status_code != 200:
        failures.append(f"certificate of A's content answered {response.status_code}")
    private = [a.content.title, a.job.topic, a.project.name, str(a.job.id), str(a.project.id), tenant_a.owner.email]
    if leaked := [marker for marker in private if marker in response.content.decode()]:
        failures.append(f"the public certificate shows A's private {leaked}")
    for method in ("POST", "PATCH", "DELETE") if route.is_api else ():
        if request(client_b, method, route.url({"content_id": a.content.content_id}), api=True).status_code != 405:
            failures.append(f"{method} on the certificate is not refused")
    return failures


def check_provider_pages(route: Route, client_b, tenant_a, tenant_b, a: Objects) -> list[str]:
    """`/providers/<name>` (API settings and connection test) and the providers' pages name a provider, not an
    object: each organization reads and writes its own settings for it. B's answers come from B's settings,
    never show A's, and B's writes leave A's settings as they were."""
    failures = []
    url = route.url({"provider": "openai"})
    for method in route.methods():
        response = request(client_b, method, url, api=route.is_api)
        if leaks(response, a) or "studio-a" in response.content.decode():
            failures.append(f"{method} {url} as B shows A's data")
    with tenant_scope(tenant_a.organization):
        kept = ProviderCredential.objects.get(provider="openai").settings
    if kept != {"base_url": "https://studio-a.llm.example/v1"}:
        failures.append(f"B's writes changed A's provider settings: {kept}")
    return failures


def check_voice_sample(route: Route, client_b, tenant_a, tenant_b, a: Objects) -> list[str]:
    """A voice's sample is the same sentence for every organization: it holds no organization's data."""
    response = request(client_b, "GET", route.url({"voice": "en"}), api=False)
    return [] if response.status_code in (200, 403) and not leaks(response, a) else [
        f"the voice sample answered {response.status_code} or shows A's data"]


def check_share_pages(route: Route, client_b, tenant_a, tenant_b, a: Objects) -> list[str]:
    """A share link's pages take the link's token, not an id: the token is the capability (whoever holds the
    link sees that one version), so B with A's token is let in by design. What must hold: an unknown token is
    404, and the page shows only the studio's public name, the version and the link's own comments, none of
    A's private data (topic, project, ids, members, other comments)."""
    failures = []
    if request(client_b, "GET", route.url({"share_token": "not-a-real-token"}), api=False).status_code != 404:
        failures.append(f"{route.name} with an unknown token is not 404")
    if route.name == "jobs:share-page":
        shown = client_b.get(route.url({"share_token": a.share_token}))
        private = [a.job.topic, a.project.name, str(a.job.id), str(a.project.id), tenant_a.owner.email,
                   a.comment.body, str(a.share_link.id)]
        if shown.status_code != 200:
            failures.append(f"A's share link answered {shown.status_code} for its holder")
        if leaked := [marker for marker in private if marker in shown.content.decode()]:
            failures.append(f"the share page shows A's private {leaked}")
    return failures


SPECIAL_ROUTES: dict[str, Callable[..., list[str]]] = {
    "jobs:share-page": check_share_pages,
    "jobs:share-video": check_share_pages,
    "jobs:share-comment": check_share_pages,
    "api:provider-credential": check_provider_pages,
    "api:provider-test": check_provider_pages,
    "accounts:team-provider-save": check_provider_pages,
    "accounts:team-provider-test": check_provider_pages,
    "accounts:team-provider-delete": check_provider_pages,
    "jobs:voice-preview": check_voice_sample,
    "accounts:invitation-accept": check_invitation_token_page,
    "api:certificate": check_public_certificate,
    "rights:certificate": check_public_certificate,
}


def walk_as_b(*, client_a, client_b, tenant_a, tenant_b, api_only: bool) -> None:
    a = populate(tenant_a, "Alpha")
    b = populate(tenant_b, "Bravo")
    assert not set(a.identifying) & set(b.identifying)
    values = {kwarg: value(a) for kwarg, value in A_VALUE_FOR_KWARG.items()}
    failures: list[str] = []
    requests_made = 0
    showing_own_data = set()

    for route in routes_to_walk(api_only=api_only):
        if route.name in SPECIAL_ROUTES:
            failures += SPECIAL_ROUTES[route.name](route, client_b, tenant_a, tenant_b, a)
            continue
        url = route.url(values)
        matched = resolve(url)
        assert matched.view_name == route.name, f"{url} resolves to {matched.view_name}, not {route.name}"

        if not route.kwargs:
            # Lists, the dashboard and the like: B sees its own organization, nothing of A's.
            own = client_a.get(url)
            if leaks(own, a):
                showing_own_data.add(route.name)
            response = client_b.get(url)
            requests_made += 1
            if response.status_code >= 500:
                failures.append(f"GET {url} as B: {response.status_code}")
            if found := leaks(response, a):
                failures.append(f"GET {url} as B shows A's {found}")
            continue

        methods = route.methods()
        assert methods, f"{route.name} handles no method"
        if "GET" in methods:
            # Control: the same URL works for A, so B's 404 below comes from isolation, not a bad id.
            own = client_a.get(url)
            assert own.status_code == 200, f"GET {url} as A answered {own.status_code}: A's value is wrong"
        for method in methods:
            response = request(client_b, method, url, api=route.is_api)
            requests_made += 1
            if response.status_code != 404:
                failures.append(f"{method} {url} as B: {response.status_code}, not 404 ({response.content[:200]!r})")
            if found := leaks(response, a):
                failures.append(f"{method} {url} as B shows A's {found}")

    assert not failures, "organization B reached organization A:\n" + "\n".join(failures)
    expected_own = TENANT_DATA_ROUTES if not api_only else {n for n in TENANT_DATA_ROUTES if n.startswith("api:")}
    assert expected_own <= showing_own_data, (
        f"A's own client did not see A's data on {sorted(expected_own - showing_own_data)}; "
        "the leak check there proves nothing"
    )
    assert requests_made >= 20
    assert_a_untouched(tenant_a, a)
    # And B still works: its own project is reachable by the same routes.
    assert client_b.get(f"/api/v1/projects/{b.project.id}").status_code == 200


def test_every_route_with_a_ids_is_404_for_b_owner(tenant_a, tenant_b):
    walk_as_b(client_a=tenant_a.client("owner"), client_b=tenant_b.client("owner"),
              tenant_a=tenant_a, tenant_b=tenant_b, api_only=False)


def test_every_api_route_with_a_ids_is_404_for_b_api_key(tenant_a, tenant_b):
    # Portal pages use the session, so an API key only reaches the API.
    walk_as_b(client_a=tenant_a.key_client(), client_b=tenant_b.key_client(),
              tenant_a=tenant_a, tenant_b=tenant_b, api_only=True)


def test_walk_fails_on_a_route_parameter_it_does_not_know(monkeypatch):
    monkeypatch.delitem(A_VALUE_FOR_KWARG, "member_id")
    with pytest.raises(AssertionError, match=r"api/v1/members/<uuid:member_id> \(member_id\)"):
        routes_to_walk(api_only=True)


# --- other ways of naming the organization -----------------------------------------------------


def test_b_member_cannot_pick_a_with_the_organization_header(tenant_a, tenant_b):
    a = populate(tenant_a, "Alpha")
    client = tenant_b.client("owner")
    client.credentials(HTTP_X_ORGANIZATION=tenant_a.slug)
    for url in ("/api/v1/organization", "/api/v1/projects", f"/api/v1/projects/{a.project.id}"):
        response = client.get(url)
        assert response.status_code == 404, (url, response.status_code)
        assert not leaks(response, a)


def test_api_key_ignores_the_organization_header(tenant_a, tenant_b):
    a = populate(tenant_a, "Alpha")
    client = tenant_b.key_client()
    client.credentials(HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"], HTTP_X_ORGANIZATION=tenant_a.slug)
    response = client.get("/api/v1/organization")
    assert response.status_code == 200 and response.json()["slug"] == tenant_b.slug
    assert not leaks(client.get("/api/v1/projects"), a)


def test_b_member_cannot_switch_the_portal_to_a(tenant_a, tenant_b):
    a = populate(tenant_a, "Alpha")
    client = tenant_b.client("owner")
    response = client.post("/organizations/switch/", {"organization": tenant_a.organization.pk}, format="multipart")
    assert response.status_code == 404 and not leaks(response, a)
    assert client.session.get("organization_id") is None

    # A session tampered to name A falls back to the member's own organization.
    session = client.session
    session["organization_id"] = tenant_a.organization.pk
    session.save()
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert tenant_b.organization.name in dashboard.content.decode()
    assert not leaks(dashboard, a)


# --- fail-closed scoping in the ORM ------------------------------------------------------------


def test_tenant_models_refuse_queries_outside_a_scope(tenant_a):
    tenant_a.project("Alpha")
    assert {Project, Membership, Invitation, ApiKey, AuditEntry} <= set(tenant_models())
    with pytest.raises(ScopeError):
        list(Project.objects.all())
    with pytest.raises(ScopeError):
        Membership.objects.count()
    for model in tenant_models():
        with pytest.raises(ScopeError):
            model.objects.exists()
        with pytest.raises(ScopeError):
            model._default_manager.filter(organization_id=tenant_a.organization.pk).first()


def test_tenant_rows_refuse_writes_outside_their_scope(tenant_a, tenant_b):
    project = tenant_a.project("Alpha")
    project.name = "Moved"
    with pytest.raises(ScopeError):
        project.save()
    with tenant_scope(tenant_b.organization):
        with pytest.raises(ScopeError):
            project.save()
        with pytest.raises(ScopeError):
            project.delete()
        with pytest.raises(ScopeError):
            Project(organization=tenant_a.organization, name="Planted").save()
        with pytest.raises(ScopeError):
            Project.objects.create(organization_id=tenant_a.organization.pk, name="Planted")
        # A bulk update or delete under B's scope cannot reach A's row.
        assert Project.objects.filter(pk=project.pk).update(name="Moved") == 0
        assert Project.objects.filter(pk=project.pk).delete()[0] == 0
        # A row saved in B's scope without an organization lands in B.
        planted = Project.objects.create(name="Bravo")
        assert planted.organization_id == tenant_b.organization.pk
    with tenant_scope(tenant_a.organization):
        assert Project.objects.get(pk=project.pk).name == "Alpha"
        assert not Project.objects.filter(name="Planted").exists()


def test_a_scope_sees_none_of_bs_rows(tenant_a, tenant_b):
    a = populate(tenant_a, "Alpha")
    b = populate(tenant_b, "Bravo")
    with tenant_scope(tenant_a.organization):
        assert list(Project.objects.values_list("pk", flat=True)) == [a.project.pk]
        assert not Project.objects.filter(pk=b.project.pk).exists()
        assert not Membership.objects.filter(pk=b.membership.pk).exists()
        assert not Invitation.objects.filter(pk=b.invitation.pk).exists()
        assert not ApiKey.objects.filter(pk=b.api_key.pk).exists()
        visible = {model: set(model.objects.values_list("organization_id", flat=True)) for model in tenant_models()}
    with dangerously_unscoped():
        stored = {model: set(model.objects.values_list("organization_id", flat=True)) for model in tenant_models()}
    for model in tenant_models():
        assert visible[model] <= {tenant_a.organization.pk}, f"{model.__name__} shows rows of {visible[model]}"
        assert visible[model] == stored[model] & {tenant_a.organization.pk}, f"{model.__name__} hides A's rows"
    # The rows populate() made exist for both organizations, so the check above had B's rows to hide.
    for model in (Project, Membership, Invitation, ApiKey, AuditEntry):
        assert {tenant_a.organization.pk, tenant_b.organization.pk} <= stored[model], model.__name__


# --- PostgreSQL row level security -------------------------------------------------------------


def raw(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def raw_rowcount(sql: str, params=()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@pytest.mark.postgres
def test_connected_role_is_subject_to_row_level_security(db):
    rows = raw("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert rows, "the connected role is not in pg_roles"
    role, superuser, bypass = rows[0]
    assert not superuser, (
        f"the tests connect to PostgreSQL as {role!r}, a superuser: superusers bypass row level security, "
        "so the RLS tests would prove nothing. Connect as an ordinary role (see .ci/run)."
    )
    assert not bypass, (
        f"the role {role!r} has BYPASSRLS, so row level security never applies to it and the RLS tests "
        "would prove nothing. ALTER ROLE ... NOBYPASSRLS."
    )


@pytest.mark.postgres
def test_every_tenant_table_forces_row_level_security(db):
    models = tenant_models()
    assert len(models) >= 5
    for model in models:
        table = model._meta.db_table
        rows = raw(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, "
            "EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation') "
            "FROM pg_class c WHERE c.oid = %s::regclass",
            [connection.ops.quote_name(table)],
        )
        assert rows == [(True, True, True)], f"{table}: (rowsecurity, forcerowsecurity, policy) = {rows}"


@pytest.mark.postgres
def test_row_level_security_alone_blocks_raw_cross_tenant_sql(tenant_a, tenant_b):
    a_project = tenant_a.project("Alpha")
    b_project = tenant_b.project("Bravo")
    with dangerously_unscoped():  # the control: both rows exist and raw SQL can see them when unscoped
        assert {row[0] for row in raw("SELECT id FROM projects_project")} == {a_project.pk, b_project.pk}

    with tenant_scope(tenant_b.organization):
        assert raw("SELECT id FROM projects_project") == [(b_project.pk,)]
        assert raw("SELECT id, name FROM projects_project WHERE id = %s", [a_project.pk]) == []
        assert raw("SELECT count(*) FROM accounts_membership WHERE organization_id = %s",
                   [tenant_a.organization.pk]) == [(0,)]
        assert raw_rowcount("UPDATE projects_project SET name = 'Hijacked' WHERE id = %s", [a_project.pk]) == 0
        assert raw_rowcount("DELETE FROM projects_project WHERE id = %s", [a_project.pk]) == 0
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            raw(
                "INSERT INTO projects_project (id, organization_id, name, description, created_at, updated_at) "
                "VALUES (%s, %s, 'Planted', '', %s, %s)",
                [uuid.uuid4(), tenant_a.organization.pk, timezone.now(), timezone.now()],
            )
        # Nor can B's own row be handed over to A.
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            raw("UPDATE projects_project SET organization_id = %s WHERE id = %s",
                [tenant_a.organization.pk, b_project.pk])
        # The savepoint rollbacks above must not have lost the scope on the connection.
        assert raw("SELECT id FROM projects_project") == [(b_project.pk,)]

    assert raw("SELECT id FROM projects_project") == []  # no scope at all: nothing
    assert raw("SELECT count(*) FROM accounts_membership") == [(0,)]

    with tenant_scope(tenant_a.organization):
        assert raw("SELECT id, name FROM projects_project") == [(a_project.pk, "Alpha")]


@pytest.mark.postgres
def test_a_failed_statement_in_a_savepoint_keeps_the_connection_usable_and_scoped(tenant_a, tenant_b):
    # Regression: the backend used to send its set_config ahead of ROLLBACK TO SAVEPOINT, into the
    # aborted transaction, so any error caught by an inner atomic() broke the connection.
    a_project = tenant_a.project("Alpha")
    b_project = tenant_b.project("Bravo")
    with tenant_scope(tenant_b.organization):
        with pytest.raises(DatabaseError), transaction.atomic():
            with tenant_scope(tenant_a.organization):  # the scope changes after the savepoint...
                raw("SELECT id FROM projects_project")
                Project.objects.create(name="Alpha")  # ...and the statement fails (unique name)
        # Back in B's scope after the rollback: RLS follows B again, not the rolled-back A.
        assert raw("SELECT id FROM projects_project") == [(b_project.pk,)]
        assert list(Project.objects.values_list("pk", flat=True)) == [b_project.pk]
    with tenant_scope(tenant_a.organization):
        assert raw("SELECT id FROM projects_project") == [(a_project.pk,)]


@pytest.mark.postgres
def test_iterator_reads_on_a_server_side_cursor_follow_the_scope(tenant_a, tenant_b):
    """`.iterator()` runs on a named (server-side) cursor, where an execute only declares the
    statement: the scope's settings must still be applied before it, and follow each change."""
    tenant_a.project("Alpha iterated")
    tenant_b.project("Bravo iterated")
    with transaction.atomic():
        with dangerously_unscoped():
            every = {p.name for p in Project.objects.all().iterator(chunk_size=10)}
        with tenant_scope(tenant_a.organization):
            only_a = {p.name for p in Project.objects.all().iterator(chunk_size=10)}
        with tenant_scope(tenant_b.organization):
            only_b = {p.name for p in Project.objects.all().iterator(chunk_size=10)}
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('app.organization_id')")
                setting = cursor.fetchone()[0]
    assert {"Alpha iterated", "Bravo iterated"} <= every
    assert "Alpha iterated" in only_a and "Bravo iterated" not in only_a
    assert "Bravo iterated" in only_b and "Alpha iterated" not in only_b
    assert setting == str(tenant_b.organization.id)
