"""Portal pages that list jobs and start one: the organization's jobs with filters, the new job form
(from a template or from scratch) and its live cost estimate against the budgets.

They use what the jobs API uses (generation/api/jobs.py): `selectors.job_list` for the list, the API's
`JobIn` serializer to validate a new job, `services.job_create` to start it, and for the estimate
`services.job_options`, `services.job_estimate`, `budgets.budget_check` and `budgets.spend_summary`."""
from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.decorators import requires_scope
from accounts.portal.base import page_of, portal_actor
from config.errors import DomainError
from generation import budgets, selectors, services
from generation.api.jobs import JobIn
from generation.models import Job, JobStatus
from generation.portal.jobs import STATUS_LABELS
from generation.providers.offline.voice import voice_sample, voices
from generation.references import asset_problem
from projects import templates as project_templates
from projects.schemas import STYLE_NAMES
from projects.selectors import project_list
from rights.models import ContentKind
from rights.selectors import asset_list

TEMPLATE_CHOICES_MAX = 200  # the select lists the organization's templates first, then public ones
OPTION_FIELDS = ["duration_s", "aspect_ratio", "resolution", "shots", "voice", "language"]
# options.references' keys and the form's fields for them.
REFERENCE_FIELDS = {"image": "reference_image", "logo": "logo", "logo_placement": "logo_placement",
                    "music": "music"}
ASSET_CHOICES_MAX = 200  # the newest image assets are offered as references


# --- the list ----------------------------------------------------------------------------------

class JobFilterForm(forms.Form):
    status = forms.ChoiceField(label=gettext_lazy("Status"), required=False)
    project = forms.ChoiceField(label=gettext_lazy("Project"), required=False)

    def __init__(self, *args, projects, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", _("Any status")), *STATUS_LABELS.items()]
        self.fields["project"].choices = [("", _("Any project")), *((str(p.pk), p.name) for p in projects)]


@requires_scope("job:read")
def job_list(request):
    projects = list(project_list().select_related(None).only("id", "name"))
    filters = JobFilterForm(request.GET, projects=projects)
    status = project_id = ""
    if filters.is_valid():  # an unknown status or project filters nothing out, and says so
        status, project_id = filters.cleaned_data["status"], filters.cleaned_data["project"]
    page = page_of(request, selectors.job_list(status=status, project_id=project_id or None))
    for job in page.object_list:
        job.status_label = STATUS_LABELS.get(job.status, job.status)
        job.progress_percent = round((job.progress or 0) * 100)
        job.cost_text = budgets.money(job.cost)
    return render(request, "generation/job_list.html", {
        "page": page, "filters": filters, "filtered": bool(status or project_id), "has_projects": bool(projects),
        "completed": JobStatus.COMPLETED,
    })


# --- the new job form --------------------------------------------------------------------------

class JobNewForm(forms.Form):
    """The fields POST /api/v1/jobs accepts, for the browser. The rules are the API's: the form is
    checked by `generation.api.jobs.JobIn` and the options by `services.job_options`."""

    template = forms.CharField(required=False, widget=forms.HiddenInput)
    project = forms.ChoiceField(label=gettext_lazy("Project"))
    topic = forms.CharField(label=gettext_lazy("Topic"), widget=forms.Textarea(attrs={"rows": 3}),
                            help_text=gettext_lazy("What the video is about, from 3 to 2000 characters."))
    style = forms.ChoiceField(label=gettext_lazy("Style"), required=False)
    duration_s = forms.CharField(label=gettext_lazy("Duration (seconds)"),
                                 help_text=gettext_lazy("From 5 to 300 seconds."),
                                 widget=forms.NumberInput(attrs={"min": 5, "max": 300, "step": "any"}))
    aspect_ratio = forms.ChoiceField(label=gettext_lazy("Aspect ratio"),
                                     choices=[(r, r) for r in services.ASPECT_RATIOS])
    resolution = forms.ChoiceField(label=gettext_lazy("Resolution"), choices=[(r, r) for r in services.RESOLUTIONS])
    shots = forms.CharField(label=gettext_lazy("Shots"),
                            help_text=gettext_lazy("From 1 to 24; each shot needs at least one second."),
                            widget=forms.NumberInput(attrs={"min": 1, "max": 24}))
    voice = forms.ChoiceField(label=gettext_lazy("Voice"), required=False,
                              help_text=gettext_lazy("Who narrates; listen to each voice below the form."))
    language = forms.ChoiceField(label=gettext_lazy("Language"), required=False,
                                 choices=[("auto", gettext_lazy("Detect from the topic")), ("en", "English"),
                                          ("zh", "中文")],
                                 help_text=gettext_lazy("The language of the script, narration and subtitles."))
    # The studio's uploaded image assets the job builds on (generation.references), by content id.
    reference_image = forms.ChoiceField(
        label=gettext_lazy("Product or character image"), required=False,
        help_text=gettext_lazy("One of the studio's uploaded images: every shot's picture builds on it."))
    logo = forms.ChoiceField(label=gettext_lazy("Logo"), required=False,
                             help_text=gettext_lazy("One of the studio's uploaded images, shown as the logo."))
    music = forms.ChoiceField(label=gettext_lazy("Music track"), required=False, help_text=gettext_lazy(
        "One of the studio's uploaded audio files, under the narration; none: music made for the style."))
    logo_placement = forms.ChoiceField(label=gettext_lazy("Logo placement"), required=False, choices=[
        ("corner", gettext_lazy("In the top right corner of every frame")),
        ("end_card", gettext_lazy("On an end card over the last two seconds"))])

    def __init__(self, *args, projects, assets=(), tracks=(), **kwargs):
        super().__init__(*args, **kwargs)
        asset_choices = [("", _("None")), *((a.content_id, a.title or a.content_id) for a in assets)]
        self.fields["reference_image"].choices = asset_choices
        self.fields["logo"].choices = asset_choices
        self.fields["music"].choices = [("", _("Music made for the style")),
                                        *((a.content_id, a.title or a.content_id) for a in tracks)]
        self.fields["project"].choices = [("", _("Choose a project")), *((str(p.pk), p.name) for p in projects)]
        self.fields["style"].choices = [("", _("Detect from the topic")), *((s, s) for s in STYLE_NAMES)]
        choices = [("auto", _("The voice of the job’s language")), ("none", _("No narration")),
                   *((v["voice"], v["label"]) for v in voices())]
        asked = str(self.data.get("voice") or self.initial.get("voice") or "")
        if asked and asked not in dict(choices):  # a template's own voice name stays selectable
            choices.append((asked, asked))
        self.fields["voice"].choices = choices

    def payload(self) -> dict:
        """The API's request body, from what was typed (JobIn checks it)."""
        data = self.data
        options = {key: data.get(key, "") for key in OPTION_FIELDS}
        options = {key: value for key, value in options.items() if value != "" or key == "voice"}
        references = {key: data.get(field, "") for key, field in REFERENCE_FIELDS.items() if data.get(field)}
        if references.get("image") or references.get("logo") or references.get("music"):
            options["references"] = references
        return {"project": data.get("project", ""), "topic": data.get("topic", ""), "style": data.get("style", ""),
                "template": data.get("template") or None, "options": options}

    def checked(self) -> dict | None:
        """The validated request, or None with the errors on the form."""
        serializer = JobIn(data=self.payload())
        if serializer.is_valid():
            return serializer.validated_data
        for field, problems in serializer.errors.items():
            if field == "options" and isinstance(problems, dict):
                _option_errors(self, problems)
            else:
                for problem in problems if isinstance(problems, list) else [problems]:
                    self.add_error(field if field in self.fields else None, str(problem))
        return None


def _option_errors(form: JobNewForm, problems: dict) -> None:
    """The options' errors on their fields; the references' (nested once more) on the asset fields."""
    for option, option_problems in problems.items():
        if option == "references" and isinstance(option_problems, dict):
            for key, reference_problems in option_problems.items():
                field = REFERENCE_FIELDS.get(key)
                for problem in reference_problems if isinstance(reference_problems, (list, tuple)) else [
                        reference_problems]:
                    form.add_error(field if field in form.fields else None, str(problem))
            continue
        for problem in option_problems if isinstance(option_problems, (list, tuple)) else [option_problems]:
            form.add_error(option if option in form.fields else None, str(problem))


def _refused(form: JobNewForm, exc: DomainError) -> None:
    """A service's refusal on the form; the options' errors (nested under `options`) on their fields."""
    fields = dict(exc.fields or {})
    nested = fields.pop("options", None)
    if isinstance(nested, dict):
        _option_errors(form, nested)
    for field, problems in fields.items():
        if field in form.fields and field != "template":
            for problem in problems if isinstance(problems, (list, tuple)) else [problems]:
                form.add_error(field, str(problem))
    form.add_error(None, exc.message)


def _usable_assets(kind: str = ContentKind.IMAGE) -> list:
    """The organization's assets of `kind` that a job may build on (the tenant scope limits them)."""
    found = asset_list().filter(kind=kind).select_related(None)
    return [a for a in found.only("content_id", "title", "kind", "rights_hold", "original", "protected")[
        :ASSET_CHOICES_MAX] if not asset_problem(a, kind)]


def _asset_choices() -> dict:
    return {"assets": _usable_assets(ContentKind.IMAGE), "tracks": _usable_assets(ContentKind.AUDIO)}


def _template_choices(organization) -> list:
    found = project_templates.template_list(organization=organization, scope="all")[:TEMPLATE_CHOICES_MAX]
    return [(str(t.pk), t.name if t.organization_id == organization.pk
             else _("%(name)s (by %(owner)s)") % {"name": t.name, "owner": t.organization.public_name})
            for t in found]


def _initial(request, organization) -> tuple[dict, dict | None]:
    """The form's starting values: the template's settings where `?template=` names one the
    organization may use, else the API's defaults; `?project=` preselects a project."""
    initial = {key: services.OPTION_DEFAULTS[key] for key in OPTION_FIELDS}
    initial["project"] = request.GET.get("project", "")
    template = None
    template_id = request.GET.get("template", "")
    if template_id:
        try:
            version = project_templates.template_get_for_use(organization=organization, template_id=template_id)
        except DomainError:
            messages.error(request, _("That template does not exist or is not available to this organization."))
        else:
            template = {"id": str(version.template_id), "name": version.template.name, "version": version.version,
                        "description": version.template.description}
            settings = version.settings
            initial.update({key: settings[key] for key in OPTION_FIELDS if key in settings})
            initial["style"] = settings.get("style", "")
            initial["template"] = template["id"]
    return initial, template


def _estimate(request, values: dict) -> dict:
    """What the job would cost and how that stands against the budgets, without saving anything.
    Built like `services.job_create` builds its job, then priced by `services.job_estimate`."""
    organization = request.organization
    snapshot = {}
    if values.get("template"):
        _version, snapshot = project_templates.template_for_job(organization=organization,
                                                                template_id=values["template"])
    options = services.job_options(template_settings=snapshot.get("settings", {}), options=dict(values["options"]))
    draft = Job(organization=organization, options=options, template_snapshot=snapshot)
    cost = services.job_estimate(job=draft)
    summary = budgets.spend_summary(organization=organization, user=request.user)
    refusal = ""
    try:
        budgets.budget_check(organization=organization, user=request.user, estimated_cost=cost)
    except budgets.BudgetExceeded as exc:
        refusal = exc.message
    return {"cost": budgets.money(cost), "summary": summary, "refusal": refusal, "options": options,
            "month_spent": budgets.money(summary["month_spent"]),
            "month_budget": budgets.money(summary["month_budget"]) if summary["month_budget"] is not None else None,
            "day_spent": budgets.money(summary.get("day_spent", Decimal("0"))),
            "day_budget": (budgets.money(summary["user_daily_budget"])
                           if summary["user_daily_budget"] is not None else None)}


def _estimate_for(request, form: JobNewForm) -> tuple[dict | None, str]:
    """(estimate, problem): the estimate of a form's settings, or why there is none yet."""
    payload = form.payload()
    payload["topic"] = payload["topic"] or "---"  # the topic does not change the price
    payload["project"] = payload["project"] or "00000000-0000-0000-0000-000000000000"
    serializer = JobIn(data=payload)
    if not serializer.is_valid():
        return None, _("Fix the highlighted settings to see the estimate.")
    try:
        return _estimate(request, serializer.validated_data), ""
    except DomainError as exc:
        return None, exc.message


@requires_scope("job:create")
def job_new(request):
    organization = request.organization
    projects = list(project_list().select_related(None).only("id", "name"))
    estimate = None
    problem = ""
    if request.method == "POST":
        form = JobNewForm(request.POST, projects=projects, **_asset_choices())
        template_choices = _template_choices(organization)
        template = next(({"id": pk, "name": name} for pk, name in template_choices
                         if pk == request.POST.get("template")), None)
        status = 200
        if form.is_valid() and (values := form.checked()) is not None:
            if "estimate" in request.POST:  # the no-script way to see the estimate first
                estimate, problem = _estimate_for(request, form)
            else:
                try:
                    job, _created = services.job_create(
                        organization=organization, actor=portal_actor(request), project_id=values["project"],
                        topic=values["topic"], style=values["style"], template_id=values["template"],
                        options=dict(values["options"]), priority=values["priority"])
                except DomainError as exc:  # over budget (402), content refused (422), a bad option (400)
                    _refused(form, exc)
                    status = exc.status
                    estimate, problem = _estimate_for(request, form)
                else:
                    messages.success(request, _("The job has started."))
                    return redirect("jobs:job-detail", job_id=job.pk)
        if form.errors and status == 200:
            status = 400
    else:
        initial, template = _initial(request, organization)
        form = JobNewForm(initial=initial, projects=projects, **_asset_choices())
        template_choices = _template_choices(organization)
        status = 200
    return render(request, "generation/job_new.html", {
        "form": form, "template": template, "template_choices": template_choices,
        "estimate": estimate, "problem": problem, "has_projects": bool(projects), "voice_list": voices(),
    }, status=status)


@requires_scope("job:create")
def job_estimate(request):
    """The estimate panel of the new job form (an htmx fragment); it saves nothing."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    form = JobNewForm(request.POST, projects=[])
    estimate, problem = _estimate_for(request, form)
    return render(request, "generation/_estimate.html", {"estimate": estimate, "problem": problem})


@requires_scope("job:create")
def voice_preview(request, voice: str):
    """A short sample of one of the installed voices (WAV), for the new-job form's voice list."""
    if voice not in {v["voice"] for v in voices()}:
        raise Http404("no such voice")
    response = HttpResponse(voice_sample(voice), content_type="audio/wav")
    response["Cache-Control"] = "private, max-age=86400"
    return response
