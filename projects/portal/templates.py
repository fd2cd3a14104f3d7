"""Portal pages of the templates library: the organization's own templates and the public library,
a template with its versions, and the forms that create, edit (a new version), duplicate and delete.

They call what the template API calls (projects/api/templates.py), with the same scopes: reads need
`template:read`, writes `template:write`; settings are checked by `template_settings_validate`."""
from __future__ import annotations

from collections.abc import Mapping

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.decorators import requires_scope
from accounts.portal.base import form_refused, page_of, portal_actor
from config.errors import DomainError, NotFound
from projects import templates
from projects.error_codes import ProjectsErrors
from projects.schemas import STYLE_NAMES
from projects.templates import (
    ASPECT_RATIOS,
    MIN_SHOT_S,
    PROMPT_STAGES,
    PROVIDER_KINDS,
    PROVIDERS_BY_KIND,
    RESOLUTIONS,
    SUBTITLE_BACKGROUNDS,
    SUBTITLE_OUTLINES,
    SUBTITLE_POSITIONS,
    SUBTITLE_SIZES,
)

TABS = {"own": gettext_lazy("Our templates"), "public": gettext_lazy("Public library")}
PROMPT_LABELS = {
    "style": gettext_lazy("Style prompt"),
    "script": gettext_lazy("Script prompt"),
    "storyboard": gettext_lazy("Storyboard prompt"),
    "frame": gettext_lazy("Frame prompt"),
    "clip": gettext_lazy("Clip prompt"),
}
PROVIDER_LABELS = {
    "text": gettext_lazy("Text providers"),
    "image": gettext_lazy("Image providers"),
    "video": gettext_lazy("Video providers"),
    "voice": gettext_lazy("Voice providers"),
}
# Per key of `subtitle_style`: the field's label and the choices in the order the schema lists them.
SUBTITLE_STYLE_FIELDS = {
    "size": (gettext_lazy("Subtitle size"), SUBTITLE_SIZES,
             {"small": gettext_lazy("Small"), "medium": gettext_lazy("Medium"), "large": gettext_lazy("Large")}),
    "position": (gettext_lazy("Subtitle position"), SUBTITLE_POSITIONS,
                 {"bottom": gettext_lazy("Bottom of the frame"), "top": gettext_lazy("Top of the frame")}),
    "outline": (gettext_lazy("Subtitle outline"), SUBTITLE_OUTLINES,
                {"none": gettext_lazy("No outline"), "thin": gettext_lazy("Thin outline"),
                 "thick": gettext_lazy("Thick outline")}),
    "background": (gettext_lazy("Subtitle background"), SUBTITLE_BACKGROUNDS,
                   {"box": gettext_lazy("Translucent box"), "solid": gettext_lazy("Opaque box"),
                    "none": gettext_lazy("No box")}),
}
# Settings keys shown as a form field of the same name; providers and prompts get one field per kind/stage.
PLAIN_SETTINGS = ["style", "duration_s", "aspect_ratio", "resolution", "shots", "voice", "approval_required",
                  "recurring_character"]


def _provider_field(kind: str) -> str:
    return f"providers_{kind}"


def _prompt_field(stage: str) -> str:
    return f"prompt_{stage}"


def _subtitle_field(key: str) -> str:
    return f"subtitle_{key}"


class TemplateForm(forms.Form):
    """The fields POST /api/v1/templates accepts. Only the shape of the input is checked here; the
    rules (ranges, provider names, shots that fit the duration) are `template_settings_validate`'s."""

    name = forms.CharField(label=gettext_lazy("Name"), max_length=120)
    description = forms.CharField(label=gettext_lazy("Description"), max_length=2000, required=False,
                                  widget=forms.Textarea(attrs={"rows": 3}))
    is_public = forms.BooleanField(label=gettext_lazy("List it in the public library"), required=False,
                                   help_text=gettext_lazy("Every organization can then read and duplicate it."))
    style = forms.ChoiceField(label=gettext_lazy("Style"), required=False,
                              choices=[("", gettext_lazy("Detect from the topic")), *[(s, s) for s in STYLE_NAMES]])
    duration_s = forms.IntegerField(label=gettext_lazy("Duration (seconds)"),
                                    help_text=gettext_lazy("From 5 to 300 seconds."))
    aspect_ratio = forms.ChoiceField(label=gettext_lazy("Aspect ratio"), choices=[(r, r) for r in ASPECT_RATIOS])
    resolution = forms.ChoiceField(label=gettext_lazy("Resolution"), choices=[(r, r) for r in RESOLUTIONS])
    shots = forms.IntegerField(label=gettext_lazy("Shots"))
    voice = forms.CharField(label=gettext_lazy("Voice"), max_length=100, required=False,
                            help_text=gettext_lazy("Empty or “auto”: the voice of the job’s language; “none”: no narration."))
    approval_required = forms.BooleanField(
        label=gettext_lazy("Wait for a reviewer's approval before protection"), required=False)
    recurring_character = forms.BooleanField(
        label=gettext_lazy("Keep a recurring character the same in every shot"), required=False,
        help_text=gettext_lazy("With the openai video provider: the first shot's clip becomes a character that "
                               "every later clip features. The later clips wait for the first one."))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["shots"].help_text = _("From 1 to 24; each shot lasts at least %(seconds)s s.") % {
            "seconds": formats.localize(MIN_SHOT_S)}
        for kind in PROVIDER_KINDS:
            self.fields[_provider_field(kind)] = forms.CharField(
                label=PROVIDER_LABELS[kind], max_length=200,
                help_text=_("In fallback order, separated by commas. Available: %(names)s.")
                % {"names": ", ".join(PROVIDERS_BY_KIND[kind])})
        for stage in PROMPT_STAGES:
            self.fields[_prompt_field(stage)] = forms.CharField(
                label=PROMPT_LABELS[stage], required=False, widget=forms.Textarea(attrs={"rows": 2}),
                help_text=_("Added to the %(stage)s step's prompt. Empty: none.") % {"stage": stage})
        for key, (label, names, labels) in SUBTITLE_STYLE_FIELDS.items():
            # Not required: a form posted without them keeps the current version's look.
            self.fields[_subtitle_field(key)] = forms.ChoiceField(
                label=label, required=False, choices=[(name, labels[name]) for name in names])

    def provider_fields(self):
        return [self[_provider_field(kind)] for kind in PROVIDER_KINDS]

    def prompt_fields(self):
        return [self[_prompt_field(stage)] for stage in PROMPT_STAGES]

    def subtitle_fields(self):
        return [self[_subtitle_field(key)] for key in SUBTITLE_STYLE_FIELDS]

    def settings(self) -> dict:
        """The settings as the API takes them (`TemplateIn.settings`)."""
        data = self.cleaned_data
        settings = {key: data[key] for key in PLAIN_SETTINGS}
        settings["providers"] = {kind: [name.strip() for name in data[_provider_field(kind)].split(",") if name.strip()]
                                 for kind in PROVIDER_KINDS}
        settings["prompts"] = {stage: data[_prompt_field(stage)] for stage in PROMPT_STAGES}
        settings["subtitle_style"] = {key: data[_subtitle_field(key)] for key in SUBTITLE_STYLE_FIELDS
                                      if data[_subtitle_field(key)]}
        return settings


def _initial(name: str = "", description: str = "", is_public: bool = False, settings: Mapping | None = None) -> dict:
    settings = settings or templates.template_defaults()
    initial = {"name": name, "description": description, "is_public": is_public,
               **{key: settings.get(key) for key in PLAIN_SETTINGS}}
    for kind in PROVIDER_KINDS:
        initial[_provider_field(kind)] = ", ".join(settings.get("providers", {}).get(kind, []))
    for stage in PROMPT_STAGES:
        initial[_prompt_field(stage)] = settings.get("prompts", {}).get(stage, "")
    look = {**templates.template_defaults()["subtitle_style"], **settings.get("subtitle_style", {})}
    for key in SUBTITLE_STYLE_FIELDS:
        initial[_subtitle_field(key)] = look[key]
    return initial


def _messages(problems) -> list[str]:
    if isinstance(problems, (list, tuple)):
        return [str(problem) for problem in problems]
    if isinstance(problems, Mapping):  # e.g. a provider list's errors by index
        return [str(problem) for value in problems.values() for problem in _messages(value)]
    return [str(problems)]


def _settings_refused(form: TemplateForm, exc: DomainError) -> None:
    """A refusal on the form: the settings' errors (`fields.settings`, see
    `template_settings_validate`) go to the field each one names; the others as `form_refused` does."""
    fields = dict(exc.fields or {})
    settings = fields.pop("settings", None)
    if exc.code == ProjectsErrors.NAME_TAKEN:
        form.add_error("name", _("A template with this name exists in your organization."))
        return
    if fields:
        form_refused(form, DomainError(exc.message, fields=fields))
    if settings is None:
        if not fields:
            form.add_error(None, exc.message)
        return
    if not isinstance(settings, Mapping):
        form.add_error(None, exc.message)
        return
    for key, problems in settings.items():
        if key == "providers" and isinstance(problems, Mapping):
            targets = {_provider_field(kind): value for kind, value in problems.items()}
        elif key == "prompts" and isinstance(problems, Mapping):
            targets = {_prompt_field(stage): value for stage, value in problems.items()}
        elif key == "subtitle_style" and isinstance(problems, Mapping):
            targets = {_subtitle_field(name): value for name, value in problems.items()}
        else:
            targets = {key: problems}
        for field, value in targets.items():
            for message in _messages(value):
                form.add_error(field if field in form.fields else None, message)
    form.add_error(None, _("The template settings are invalid. Correct the fields marked below."))


def _subtitle_style_shown(settings: Mapping) -> list[tuple]:
    """(label, the chosen value's label) per key of a version's subtitle look; older versions lack it."""
    look = {**templates.template_defaults()["subtitle_style"], **settings.get("subtitle_style", {})}
    return [(label, labels.get(look[key], look[key])) for key, (label, _names, labels) in SUBTITLE_STYLE_FIELDS.items()]


def _not_found(call, **kwargs):
    """The service's answer, with NotFound (missing, or another organization's private template)
    as the portal's 404."""
    try:
        return call(**kwargs)
    except NotFound as exc:
        raise Http404(exc.message) from None


def _detail_url(template_id) -> str:
    return reverse("library:template-detail", kwargs={"template_id": template_id})


# --- pages -------------------------------------------------------------------------------------


@requires_scope("template:read")
def template_list(request):
    """GET /templates/?tab=own|public: one tab of the library, paginated (as GET /api/v1/templates?scope=)."""
    tab = request.GET.get("tab") if request.GET.get("tab") in TABS else "own"
    page = page_of(request, templates.template_list(organization=request.organization, scope=tab))
    tabs = [{"key": key, "label": label, "current": key == tab} for key, label in TABS.items()]
    return render(request, "projects/template_list.html", {"page": page, "tab": tab, "tabs": tabs})


@requires_scope("template:read")
def template_detail(request, template_id):
    """The template, its versions and the settings of one (`?version=N`, the current one by default)."""
    version = request.GET.get("version")
    try:
        version = int(version) if version else None
    except ValueError:
        raise Http404("no such version") from None
    shown = _not_found(templates.template_get_for_use, organization=request.organization, template_id=template_id,
                       version=version)
    template = shown.template
    versions = templates.template_version_list(organization=request.organization, template=template)
    settings = shown.settings
    return render(request, "projects/template_detail.html", {
        "template": template, "shown": shown, "versions": versions,
        "is_own": template.organization_id == request.organization.pk,
        "settings": settings,
        "providers": [(PROVIDER_LABELS[kind], settings.get("providers", {}).get(kind, [])) for kind in PROVIDER_KINDS],
        "prompts": [(PROMPT_LABELS[stage], settings.get("prompts", {}).get(stage, "")) for stage in PROMPT_STAGES
                    if settings.get("prompts", {}).get(stage)],
        "subtitle_style": _subtitle_style_shown(settings),
    })


@requires_scope("template:write")
def template_new(request):
    """GET: the form with the defaults; POST: create (as POST /api/v1/templates)."""
    if request.method != "POST":
        form = TemplateForm(initial=_initial(), auto_id="template-%s")
        return render(request, "projects/template_form.html", {"form": form})
    form = TemplateForm(request.POST, auto_id="template-%s")
    if form.is_valid():
        try:
            template = templates.template_create(
                organization=request.organization, actor=portal_actor(request), name=form.cleaned_data["name"],
                description=form.cleaned_data["description"], is_public=form.cleaned_data["is_public"],
                settings=form.settings())
        except DomainError as exc:
            _settings_refused(form, exc)
        else:
            messages.success(request, _("Template created at version 1."))
            return redirect(_detail_url(template.pk))
    return render(request, "projects/template_form.html", {"form": form}, status=400)


@requires_scope("template:write")
def template_edit(request, template_id):
    """GET: the form with the current version's settings; POST: save (as PATCH /api/v1/templates/<id>).
    Changed settings add a version; the earlier versions stay as they were."""
    template = _not_found(templates.template_get_own, organization=request.organization, template_id=template_id)
    current = templates.template_get_for_use(organization=request.organization, template_id=template.pk)
    context = {"template": template, "current": current}
    if request.method != "POST":
        form = TemplateForm(initial=_initial(template.name, template.description, template.is_public,
                                             current.settings), auto_id="template-%s")
        return render(request, "projects/template_form.html", {**context, "form": form})
    form = TemplateForm(request.POST, auto_id="template-%s")
    if form.is_valid():
        try:
            updated = templates.template_update(
                template=template, actor=portal_actor(request), name=form.cleaned_data["name"],
                description=form.cleaned_data["description"], is_public=form.cleaned_data["is_public"],
                settings=form.settings())
        except DomainError as exc:
            _settings_refused(form, exc)
        else:
            if updated.current_version != current.version:
                messages.success(request, _("Saved as version %(version)s.") % {"version": updated.current_version})
            else:
                messages.success(request, _("Saved. The settings did not change, so there is no new version."))
            return redirect(_detail_url(template.pk))
    return render(request, "projects/template_form.html", {**context, "form": form}, status=400)


class DuplicateForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name of the copy"), max_length=120, required=False,
                           help_text=gettext_lazy("Empty: the same name as the template copied."))


@requires_scope("template:write")
def template_duplicate(request, template_id):
    """POST: copy an own or public template's current version into a new private template (as POST
    /api/v1/templates/<id>/duplicate). GET, or a name already taken: a form to name the copy."""
    source = _not_found(templates.template_get_for_use, organization=request.organization, template_id=template_id)
    form = DuplicateForm(request.POST if request.method == "POST" else None, auto_id="duplicate-%s",
                         initial={"name": _("%(name)s (copy)") % {"name": source.template.name}})
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            copy = templates.template_duplicate(source_template_id=source.template_id,
                                                organization=request.organization,
                                                name=form.cleaned_data["name"] or None, actor=portal_actor(request))
        except DomainError as exc:
            if isinstance(exc, NotFound):
                raise Http404(exc.message) from None
            if exc.code == ProjectsErrors.NAME_TAKEN:
                taken = form.cleaned_data["name"] or source.template.name
                form = DuplicateForm({"name": _("%(name)s (copy)") % {"name": taken}}, auto_id="duplicate-%s")
                form.is_valid()
                form.add_error("name", _("“%(name)s” is taken in your templates. Choose another name for the copy.")
                               % {"name": taken})
            else:
                form_refused(form, exc)
            status = exc.status
        else:
            messages.success(request, _("Copied into your templates."))
            return redirect(_detail_url(copy.pk))
    elif request.method == "POST":
        status = 400
    return render(request, "projects/template_duplicate.html", {"source": source, "form": form}, status=status)


@requires_scope("template:write")
def template_delete(request, template_id):
    """GET: the confirmation; POST: delete the template and its versions (as DELETE
    /api/v1/templates/<id>). Jobs that used it keep their snapshot."""
    template = _not_found(templates.template_get_own, organization=request.organization, template_id=template_id)
    if request.method == "POST":
        templates.template_delete(template=template, actor=portal_actor(request))
        messages.success(request, _("Template “%(name)s” deleted.") % {"name": template.name})
        return redirect("library:template-list")
    return render(request, "projects/template_delete.html", {"template": template})
