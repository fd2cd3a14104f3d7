"""Generation templates: the settings schema of a version, the reads and writes of templates, and the
public library. A template's settings never change in place; editing them adds a `TemplateVersion`,
so a job can always say exactly which settings it ran with (`template_snapshot`).

Public templates are readable by every organization. Those reads cross tenants on purpose, so they
go through `dangerously_unscoped()` with an explicit `is_public=True` filter, and only here. Of a
public template, others read only its published versions (`TemplateVersion.is_public`: those current
while it was public), never the ones its studio made while it was private.
"""
from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from django.db import transaction
from django.db.models import BooleanField, Case, F, Q, QuerySet, Value, When
from rest_framework import serializers
from rest_framework.settings import api_settings

from accounts import services as account_services
from accounts.audit import Actor, audit_record, changed, snapshot
from accounts.models import Membership, Organization, User
from accounts.roles import Role
from config.errors import Conflict, DomainError, NotFound
from config.tenancy import dangerously_unscoped, tenant_scope
from projects.error_codes import ProjectsErrors
from projects.models import Template, TemplateVersion
from projects.schemas import SHOT, STYLE_NAMES

# --- settings of a version ---------------------------------------------------------------------

ASPECT_RATIOS = ["16:9", "9:16", "1:1"]
RESOLUTIONS = ["480p", "720p", "1080p"]
PROVIDER_KINDS = ["text", "image", "video", "voice"]
PROVIDER_NAMES = ["offline", "openai", "diffusers"]
# diffusers only has image pipelines (text to image, image to video); see DESIGN.md, Providers.
TEXT_AND_VOICE_PROVIDER_NAMES = ["offline", "openai"]
PROVIDERS_BY_KIND = {
    "text": [*TEXT_AND_VOICE_PROVIDER_NAMES, "transformers"],  # transformers: a local text model (workers)
    "image": PROVIDER_NAMES,
    "video": PROVIDER_NAMES,
    "voice": TEXT_AND_VOICE_PROVIDER_NAMES,
}
PROMPT_STAGES = ["style", "script", "storyboard", "frame", "clip"]
PROMPT_MAX_LENGTH = 2000
# How burned-in subtitles look (generation.media draws them): the font's size against the frame, where
# they sit, the outline around the glyphs and what is behind them.
SUBTITLE_SIZES = ["small", "medium", "large"]
SUBTITLE_POSITIONS = ["bottom", "top"]
SUBTITLE_OUTLINES = ["none", "thin", "thick"]
SUBTITLE_BACKGROUNDS = ["box", "solid", "none"]  # box: translucent dark; solid: opaque dark
# Who must approve a job's current version when approval is required (generation/review.py).
APPROVAL_RULES = ["any", "all"]
# The storyboard schema's shortest shot: more shots than this allows cannot fit the duration.
MIN_SHOT_S = SHOT["properties"]["duration_s"]["minimum"]

_DEFAULTS = {
    "style": "",
    "duration_s": 30,
    "aspect_ratio": "16:9",
    "resolution": "720p",
    "shots": 8,
    "voice": "auto",
    "burn_subtitles": True,
    "subtitle_style": {"size": "medium", "position": "bottom", "outline": "thin", "background": "box"},
    "providers": {kind: ["offline"] for kind in PROVIDER_KINDS},
    "approval_required": False,
    "approval_rule": "any",
    "recurring_character": False,
    "prompts": {},
}
# Keys whose value is an object merged key by key when settings are laid over a base.
_MERGED_KEYS = ("providers", "prompts", "subtitle_style")


def template_defaults() -> dict:
    """The settings of a template that says nothing: offline providers, 30 s, 16:9, 720p, 8 shots."""
    return copy.deepcopy(_DEFAULTS)


class _StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know: a misspelt setting must fail, not be silently dropped."""

    refuses_unknown_keys = True  # the API schema states it (config.schema)

    def to_internal_value(self, data):
        unknown = [str(key) for key in data if key not in self.fields] if isinstance(data, Mapping) else []
        errors: dict = {}
        value = None
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            detail = exc.detail
            errors = dict(detail) if isinstance(detail, Mapping) else {api_settings.NON_FIELD_ERRORS_KEY: detail}
        for key in unknown:
            errors[key] = ["Unknown key."]
        if errors:
            raise serializers.ValidationError(errors)
        return value


class ProviderChainField(serializers.ListField):
    """Provider names for one kind of stage, in fallback order: the first is tried first."""

    unique_items = True  # the API schema states it (config.schema)

    def __init__(self, kind: str, **kwargs):
        names = PROVIDERS_BY_KIND[kind]
        super().__init__(
            child=serializers.ChoiceField(choices=names), min_length=1, max_length=len(names),
            default=lambda: ["offline"], **kwargs,
        )

    def to_internal_value(self, data):
        chain = super().to_internal_value(data)
        if len(set(chain)) != len(chain):
            raise serializers.ValidationError("A provider appears twice; the list is the fallback order.")
        return chain


class ProviderChains(_StrictSerializer):
    """Per kind of stage, the providers to try in order."""

    text = ProviderChainField("text")
    image = ProviderChainField("image")
    video = ProviderChainField("video")
    voice = ProviderChainField("voice")


class StagePrompts(_StrictSerializer):
    """Prompt additions per stage; an empty one means none and is dropped."""

    style = serializers.CharField(max_length=PROMPT_MAX_LENGTH, required=False, allow_blank=True)
    script = serializers.CharField(max_length=PROMPT_MAX_LENGTH, required=False, allow_blank=True)
    storyboard = serializers.CharField(max_length=PROMPT_MAX_LENGTH, required=False, allow_blank=True)
    frame = serializers.CharField(max_length=PROMPT_MAX_LENGTH, required=False, allow_blank=True)
    clip = serializers.CharField(max_length=PROMPT_MAX_LENGTH, required=False, allow_blank=True)

    def validate(self, attrs):
        return {stage: prompt for stage, prompt in attrs.items() if prompt}


class SubtitleStyle(_StrictSerializer):
    """How the burned-in subtitles look; the soft track and the .srt/.vtt files carry no style."""

    size = serializers.ChoiceField(choices=SUBTITLE_SIZES, default="medium",
                                   help_text="The font's size against the frame's short side (medium: 5%).")
    position = serializers.ChoiceField(choices=SUBTITLE_POSITIONS, default="bottom",
                                       help_text="The bottom or top of the frame, 5% of its height from the edge.")
    outline = serializers.ChoiceField(choices=SUBTITLE_OUTLINES, default="thin",
                                      help_text="The dark outline around the glyphs.")
    background = serializers.ChoiceField(choices=SUBTITLE_BACKGROUNDS, default="box",
                                         help_text="Behind the text: a translucent dark box, an opaque one, or none.")


class TemplateSettings(_StrictSerializer):
    """The schema of `TemplateVersion.settings`. Validate through `template_settings_validate`,
    which fills what is missing from a base version or the defaults first."""

    style = serializers.ChoiceField(choices=["", *STYLE_NAMES], allow_blank=True, default="",
                                    help_text="Empty: detect the style from the topic.")
    duration_s = serializers.IntegerField(min_value=5, max_value=300, default=30)
    aspect_ratio = serializers.ChoiceField(choices=ASPECT_RATIOS, default="16:9")
    resolution = serializers.ChoiceField(choices=RESOLUTIONS, default="720p")
    shots = serializers.IntegerField(min_value=1, max_value=24, default=8)
    voice = serializers.CharField(max_length=100, allow_blank=True, default="auto",
                                  help_text="auto: the voice of the job's language; none: no narration.")
    burn_subtitles = serializers.BooleanField(default=True, help_text="Burn the subtitles into the picture (the "
                                              "video always carries them as a soft track too).")
    subtitle_style = SubtitleStyle(default=lambda: template_defaults()["subtitle_style"],
                                   help_text="How burned-in subtitles look; merged key by key over the base.")
    providers = ProviderChains(default=lambda: template_defaults()["providers"],
                               help_text="Per kind of stage, provider names in fallback order.")
    approval_required = serializers.BooleanField(default=False,
                                                 help_text="The job waits for a person's approval before protection.")
    approval_rule = serializers.ChoiceField(choices=APPROVAL_RULES, default="any", help_text=(
        "With approval required: `any` one assigned reviewer (any member who may approve, when none is assigned) "
        "or `all` assigned reviewers must approve the current version."))
    recurring_character = serializers.BooleanField(
        default=False, help_text="Keep one recurring character the same across shots: with a video provider that "
        "makes characters (openai), the first shot's clip becomes a character every later clip features, so the "
        "later clips wait for the first one.")
    prompts = StagePrompts(default=dict)

    def validate(self, attrs):
        if attrs["shots"] * MIN_SHOT_S > attrs["duration_s"]:
            raise serializers.ValidationError(
                {"shots": [f"{attrs['shots']} shots do not fit in {attrs['duration_s']} s "
                           f"(each shot lasts at least {MIN_SHOT_S} s)."]}
            )
        return attrs


TEMPLATE_SETTINGS = TemplateSettings  # the name projects.models points to


def _overlay(base: dict, changes: Mapping) -> dict:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if key in _MERGED_KEYS and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _plain(errors):
    """Serializer errors as plain JSON data (list indexes become string keys)."""
    if isinstance(errors, Mapping):
        return {str(key): _plain(value) for key, value in errors.items()}
    if isinstance(errors, (list, tuple)):
        return [_plain(value) for value in errors]
    return str(errors)


def template_settings_validate(settings, *, base: dict | None = None) -> dict:
    """Complete, normalized settings from `settings` laid over `base` (or the defaults).

    A key given replaces the base's; `providers`, `prompts` and `subtitle_style` merge key by key (an
    empty prompt removes that stage's prompt). Raises DomainError 400 with the errors under
    `fields.settings`.
    """
    if not isinstance(settings, Mapping):
        raise DomainError("The template settings are invalid.", fields={"settings": ["Expected an object."]})
    merged = _overlay(_overlay(template_defaults(), base or {}), settings)
    serializer = TemplateSettings(data=merged)
    if not serializer.is_valid():
        raise DomainError("The template settings are invalid.", fields={"settings": _plain(serializer.errors)})
    return json.loads(json.dumps(serializer.validated_data))


# --- reads -------------------------------------------------------------------------------------

TEMPLATE_SCOPES = ("own", "public", "all")
_MISSING = "No such template."


def _template_uuid(template_id) -> uuid.UUID:
    try:
        return template_id if isinstance(template_id, uuid.UUID) else uuid.UUID(str(template_id))
    except ValueError:
        raise NotFound(_MISSING) from None


def _readable_by(organization: Organization) -> Q:
    """Versions `organization` may read: its own, and the published versions of anyone's public templates."""
    return Q(organization_id=organization.pk) | Q(template__is_public=True, is_public=True)


class UnscopedQuery:
    """A queryset evaluated with tenant scoping lifted, for the paginator (which counts and
    slices it). Only for querysets that already filter to what the caller may see."""

    def __init__(self, queryset: QuerySet):
        self._queryset = queryset

    def count(self) -> int:
        with dangerously_unscoped():
            return self._queryset.count()

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index):
        with dangerously_unscoped():
            found = self._queryset[index]
            return list(found) if isinstance(index, slice) else found

    def __iter__(self) -> Iterator:
        return iter(self[:])


def template_list(*, organization: Organization, scope: str = "all") -> QuerySet[Template] | UnscopedQuery:
    """Templates for `organization`'s library, its own first, then by name.

    `own`: its templates, private and public. `public`: every organization's public templates.
    `all`: its own plus the public ones of others. Each row's `organization` is loaded for its
    `public_name`, the only thing about another organization an API may show.
    """
    if scope not in TEMPLATE_SCOPES:
        raise DomainError(f"scope must be one of {', '.join(TEMPLATE_SCOPES)}.", fields={"scope": ["invalid"]})
    if scope == "own":
        with tenant_scope(organization):
            return Template.objects.select_related("organization", "created_by").order_by("name", "id")
    visible = Q(is_public=True) if scope == "public" else Q(is_public=True) | Q(organization_id=organization.pk)
    own_first = Case(When(organization_id=organization.pk, then=Value(True)), default=Value(False),
                     output_field=BooleanField())
    with dangerously_unscoped():  # the public library: other organizations' rows, is_public only
        queryset = (Template.objects.filter(visible).select_related("organization", "created_by")
                    .annotate(own_first=own_first).order_by("-own_first", "name", "id"))
    return UnscopedQuery(queryset)


def template_get_for_use(*, organization: Organization, template_id, version: int | None = None) -> TemplateVersion:
    """A version (the current one when `version` is None) of a template `organization` may use:
    its own or a public one. Another organization's private template is NotFound, like a missing
    one. The version's `template` and `template.organization` are loaded with it (one query)."""
    template_id = _template_uuid(template_id)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise NotFound(_MISSING)
    with dangerously_unscoped():  # may be another organization's public template
        queryset = TemplateVersion.objects.select_related("template__organization", "template__created_by").filter(
            _readable_by(organization), template_id=template_id
        )
        if version is None:
            queryset = queryset.filter(version=F("template__current_version"))
        else:
            queryset = queryset.filter(version=version)
        found = queryset.first()
    if found is None:
        raise NotFound(_MISSING)
    return found


def template_get_own(*, organization: Organization, template_id) -> Template:
    """`organization`'s own template, for changes; anyone else's, public or not, is NotFound."""
    template_id = _template_uuid(template_id)
    with tenant_scope(organization):
        found = Template.objects.select_related("organization").filter(pk=template_id).first()
    if found is None:
        raise NotFound(_MISSING)
    return found


@contextmanager
def _reading(template: Template, organization: Organization) -> Iterator[None]:
    if template.organization_id == organization.pk:
        with tenant_scope(organization):
            yield
    elif template.is_public:
        with dangerously_unscoped():  # another organization's public template
            yield
    else:
        raise NotFound(_MISSING)


def template_version_list(*, organization: Organization, template: Template) -> list[TemplateVersion]:
    """The versions of a template `organization` may read, newest first, without their settings:
    all of its own template's, the published ones of another organization's."""
    with _reading(template, organization):
        versions = TemplateVersion.objects.filter(template_id=template.pk)
        if template.organization_id != organization.pk:
            versions = versions.filter(is_public=True)
        return list(versions.only("id", "template_id", "version", "created_at").order_by("-version"))


def template_snapshot(version: TemplateVersion) -> dict:
    """What a job records of the template it used, so it never depends on the template later."""
    template = version.template
    return {
        "template_id": str(template.pk),
        "name": template.name,
        "version": version.version,
        "settings": copy.deepcopy(version.settings),
        "owner": template.organization.public_name,
    }


def template_for_job(*, organization: Organization, template_id, version: int | None = None
                     ) -> tuple[TemplateVersion | None, dict]:
    """For a new job of `organization`: the TemplateVersion to store in `Job.template`, and the
    snapshot for `Job.template_snapshot`.

    Another organization's public template is used through its snapshot only (the version is None):
    a foreign key across tenants would be unreadable under row level security and would break that
    organization's delete of its template.
    """
    found = template_get_for_use(organization=organization, template_id=template_id, version=version)
    own = found.organization_id == organization.pk
    return (found if own else None), template_snapshot(found)


# --- writes ------------------------------------------------------------------------------------
# They run in the caller's tenant scope, the organization's own, like every service: a template of
# another organization fails to save there, whatever the caller passed.

EDITABLE = ["name", "description", "is_public"]


def _user(actor: Actor) -> User | None:
    return actor.user if actor.user is not None and actor.user.is_authenticated else None


def _name_taken(*, name: str, exclude: Template | None = None) -> bool:
    queryset = Template.objects.filter(name=name)
    if exclude is not None:
        queryset = queryset.exclude(pk=exclude.pk)
    return queryset.exists()


def _refuse_taken_name(name: str, exclude: Template | None = None) -> None:
    if _name_taken(name=name, exclude=exclude):
        raise Conflict("A template with this name exists.", code=ProjectsErrors.NAME_TAKEN, fields={"name": ["taken"]})


def _create(*, organization: Organization, name: str, description: str, settings: dict, is_public: bool,
            actor: Actor) -> Template:
    _refuse_taken_name(name)
    template = Template.objects.create(
        organization=organization, name=name, description=description, is_public=is_public,
        current_version=1, created_by=_user(actor),
    )
    TemplateVersion.objects.create(
        organization=organization, template=template, version=1, settings=settings, is_public=is_public,
        created_by=_user(actor),
    )
    return template


@transaction.atomic
def template_create(*, organization: Organization, name: str, description: str = "", settings: Mapping | None = None,
                    is_public: bool = False, actor: Actor) -> Template:
    """A new template at version 1; missing settings take the defaults."""
    settings = template_settings_validate(settings or {})
    template = _create(organization=organization, name=name, description=description, settings=settings,
                       is_public=is_public, actor=actor)
    audit_record(actor=actor, action="template.create", target=template,
                 after={**snapshot(template, EDITABLE), "version": 1, "settings": settings})
    return template


@transaction.atomic
def template_update(*, template: Template, actor: Actor, name: str | None = None, description: str | None = None,
                    settings: Mapping | None = None, is_public: bool | None = None) -> Template:
    """Change a template. New settings (laid over the current version's, see
    `template_settings_validate`) add a version and make it current; versions never change.
    Settings equal to the current version's add nothing."""
    # Locked so that two concurrent edits cannot both take the next version number.
    template = Template.objects.select_for_update().filter(pk=template.pk).first()
    if template is None:  # not in the active organization
        raise NotFound(_MISSING)
    current = TemplateVersion.objects.get(template=template, version=template.current_version)
    before = {**snapshot(template, EDITABLE), "current_version": template.current_version,
              "settings": current.settings}
    if name is not None and name != template.name:
        _refuse_taken_name(name, exclude=template)
        template.name = name
    if description is not None:
        template.description = description
    if is_public is not None:
        template.is_public = is_public
    new_settings = current.settings
    if settings is not None:
        new_settings = template_settings_validate(settings, base=current.settings)
        if new_settings != current.settings:
            template.current_version += 1
            TemplateVersion.objects.create(
                organization_id=template.organization_id, template=template, version=template.current_version,
                settings=new_settings, is_public=template.is_public, created_by=_user(actor),
            )
    if template.is_public:
        # Publishing publishes the current version only; the ones made while private stay private.
        TemplateVersion.objects.filter(template=template, version=template.current_version,
                                       is_public=False).update(is_public=True)
    after = {**snapshot(template, EDITABLE), "current_version": template.current_version, "settings": new_settings}
    old, new = changed(before, after)
    if new:
        template.save()
        audit_record(actor=actor, action="template.update", target=template, before=old, after=new)
    return template


@transaction.atomic
def template_duplicate(*, source_template_id, organization: Organization, name: str | None = None,
                       actor: Actor) -> Template:
    """Copy the current version of an own or public template into `organization` as a new private
    template at version 1. The name defaults to the source's."""
    source = template_get_for_use(organization=organization, template_id=source_template_id)
    settings = template_settings_validate(source.settings)
    template = _create(
        organization=organization, name=name or source.template.name, description=source.template.description,
        settings=settings, is_public=False, actor=actor,
    )
    audit_record(actor=actor, action="template.duplicate", target=template, after={
        **snapshot(template, EDITABLE), "version": 1, "settings": settings,
        "source": {"template_id": str(source.template_id), "version": source.version,
                   "owner": source.template.organization.public_name},
    })
    return template


@transaction.atomic
def template_delete(*, template: Template, actor: Actor) -> None:
    """Delete a template and its versions; jobs keep their snapshots (their `template` becomes null)."""
    audit_record(actor=actor, action="template.delete", target=template,
                 before={**snapshot(template, EDITABLE), "current_version": template.current_version})
    template.delete()


# --- the public library ------------------------------------------------------------------------

LIBRARY_SLUG = "platform"
LIBRARY_NAME = "Platform library"
LIBRARY_EMAIL = "library@platform.local"
LIBRARY = [
    {
        "name": "Product teaser 30s",
        "description": "A punchy 30 second commercial teaser in landscape.",
        "settings": {"style": "commercial", "duration_s": 30, "aspect_ratio": "16:9", "resolution": "1080p",
                     "shots": 8, "prompts": {"script": "Open with the product's promise; end on a call to action."}},
    },
    {
        "name": "Vertical social 15s 9:16",
        "description": "A fast vertical clip for social feeds.",
        "settings": {"style": "", "duration_s": 15, "aspect_ratio": "9:16", "resolution": "720p", "shots": 5,
                     "prompts": {"storyboard": "Frame the subject for a phone screen; keep text in the centre."}},
    },
    {
        "name": "Documentary 60s with approval",
        "description": "A calm one minute documentary short that waits for a reviewer before protection.",
        "settings": {"style": "documentary", "duration_s": 60, "aspect_ratio": "16:9", "resolution": "1080p",
                     "shots": 12, "approval_required": True,
                     "prompts": {"script": "Factual, measured narration; no superlatives."}},
    },
]


def _library_organization() -> Organization:
    user = User.objects.filter(email=LIBRARY_EMAIL).first()
    if user is None:
        user = User.objects.create_user(email=LIBRARY_EMAIL, password=None)  # no usable password: nobody signs in
    organization = Organization.objects.filter(slug=LIBRARY_SLUG).first()
    if organization is None:
        return account_services.organization_create(
            name=LIBRARY_NAME, slug=LIBRARY_SLUG, owner=user, public_name=LIBRARY_NAME, actor=Actor.system()
        )
    with tenant_scope(organization):
        owned = Membership.objects.filter(user=user, role=Role.OWNER).exists()
    if not owned:
        # A studio that took the slug must never become the publisher of every studio's library.
        raise Conflict(f"The organization {LIBRARY_SLUG!r} exists but is not the platform library.",
                       code=ProjectsErrors.LIBRARY_SLUG_TAKEN)
    return organization


@transaction.atomic
def ensure_public_library() -> list[Template]:
    """Create the platform organization and its public templates where missing (idempotent: an
    existing library template is left as operators may have edited it). Returns the library's
    templates named in LIBRARY."""
    organization = _library_organization()
    templates = []
    with tenant_scope(organization):
        names = [entry["name"] for entry in LIBRARY]
        existing = {template.name: template for template in Template.objects.filter(name__in=names)}
        for entry in LIBRARY:
            template = existing.get(entry["name"])
            if template is None:
                template = template_create(organization=organization, is_public=True, actor=Actor.system(), **entry)
            templates.append(template)
    return templates
