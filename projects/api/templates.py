"""Template endpoints: an organization's own templates and the public library. Public templates of
other organizations can be read and duplicated, never changed: a write to one answers 404, as for
a missing template."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from accounts.api.base import OrganizationAPIView
from config.json_input import StrictSerializer
from projects import templates
from projects.error_codes import ProjectsErrors
from projects.models import Template, TemplateVersion
from projects.templates import TEMPLATE_SCOPES, TemplateSettings


@extend_schema_field(TemplateSettings(partial=True))
class SettingsIn(serializers.DictField):
    """Any subset of the settings; `projects.templates.template_settings_validate` checks them."""


@extend_schema_field(TemplateSettings)
class SettingsOut(serializers.JSONField):
    """A version's settings as stored: versions are immutable, so shown exactly as written."""


class TemplateIn(StrictSerializer):
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    settings = SettingsIn(required=False, help_text="Missing keys take the defaults (on change: the current "
                                                    "version's); a change of settings adds a version.")
    is_public = serializers.BooleanField(required=False, default=False,
                                         help_text="List it in every organization's library.")


class DuplicateIn(StrictSerializer):
    name = serializers.CharField(max_length=120, required=False, help_text="Defaults to the source's name.")


class ListQuery(serializers.Serializer):
    scope = serializers.ChoiceField(choices=TEMPLATE_SCOPES, required=False, default="all")


class TemplateOut(serializers.ModelSerializer):
    """A template as the requesting organization sees it; of another organization's template only
    its owner's public name shows."""

    owner = serializers.CharField(source="organization.public_name", help_text="The owner's public name.")
    is_own = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = Template
        fields = ["id", "name", "description", "is_public", "is_own", "owner", "current_version", "created_by",
                  "created_at", "updated_at"]

    def _is_own(self, template: Template) -> bool:
        return template.organization_id == self.context["organization"].pk

    def get_is_own(self, template: Template) -> bool:
        return self._is_own(template)

    @extend_schema_field(serializers.EmailField(allow_null=True))
    def get_created_by(self, template: Template) -> str | None:
        if not self._is_own(template) or template.created_by_id is None:
            return None
        return template.created_by.email


class VersionSummaryOut(serializers.ModelSerializer):
    class Meta:
        model = TemplateVersion
        fields = ["version", "created_at"]


class TemplateDetailOut(TemplateOut):
    """The template with its current version's settings and the list of its versions."""

    settings = serializers.SerializerMethodField()
    versions = serializers.SerializerMethodField()

    class Meta(TemplateOut.Meta):
        fields = [*TemplateOut.Meta.fields, "settings", "versions"]

    @extend_schema_field(TemplateSettings)
    def get_settings(self, template: Template) -> dict:
        return self.context["current"].settings

    @extend_schema_field(VersionSummaryOut(many=True))
    def get_versions(self, template: Template) -> list:
        return VersionSummaryOut(self.context["versions"], many=True).data


class TemplateVersionOut(serializers.ModelSerializer):
    template_id = serializers.UUIDField()
    name = serializers.CharField(source="template.name")
    settings = SettingsOut()

    class Meta:
        model = TemplateVersion
        fields = ["template_id", "name", "version", "settings", "created_at"]


def _detail(request, template_id) -> dict:
    current = templates.template_get_for_use(organization=request.organization, template_id=template_id)
    template = current.template
    versions = templates.template_version_list(organization=request.organization, template=template)
    context = {"organization": request.organization, "current": current, "versions": versions}
    return TemplateDetailOut(template, context=context).data


class TemplateListView(OrganizationAPIView):
    required_scopes = {"GET": "template:read", "POST": "template:write"}
    error_codes = {"POST": (ProjectsErrors.NAME_TAKEN,)}
    serializer_class = TemplateOut

    @extend_schema(
        parameters=[OpenApiParameter("scope", str, enum=list(TEMPLATE_SCOPES), description=(
            "own: this organization's templates; public: every public template; all (default): own and public"))],
        responses=TemplateOut(many=True),
    )
    def get(self, request):
        query = ListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        listing = templates.template_list(organization=request.organization, scope=query.validated_data["scope"])
        page = self.paginate_queryset(listing)
        data = TemplateOut(page, many=True, context={"organization": request.organization}).data
        return self.get_paginated_response(data)

    @extend_schema(request=TemplateIn, responses={201: TemplateDetailOut})
    def post(self, request):
        data = TemplateIn(data=request.data)
        data.is_valid(raise_exception=True)
        template = templates.template_create(organization=request.organization, actor=request.actor,
                                            **data.validated_data)
        return Response(_detail(request, template.pk), status=status.HTTP_201_CREATED)


class TemplateDetailView(OrganizationAPIView):
    required_scopes = {"GET": "template:read", "PATCH": "template:write", "DELETE": "template:write"}
    error_codes = {"PATCH": (ProjectsErrors.NAME_TAKEN,)}
    serializer_class = TemplateDetailOut

    @extend_schema(responses=TemplateDetailOut)
    def get(self, request, template_id):
        return Response(_detail(request, template_id))

    @extend_schema(request=TemplateIn(partial=True), responses=TemplateDetailOut)
    def patch(self, request, template_id):
        template = templates.template_get_own(organization=request.organization, template_id=template_id)
        data = TemplateIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        templates.template_update(template=template, actor=request.actor, **data.validated_data)
        return Response(_detail(request, template_id))

    def delete(self, request, template_id):
        template = templates.template_get_own(organization=request.organization, template_id=template_id)
        templates.template_delete(template=template, actor=request.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplateVersionView(OrganizationAPIView):
    required_scopes = {"GET": "template:read"}
    serializer_class = TemplateVersionOut

    def get(self, request, template_id, version):
        found = templates.template_get_for_use(organization=request.organization, template_id=template_id,
                                               version=version)
        return Response(TemplateVersionOut(found).data)


class TemplateDuplicateView(OrganizationAPIView):
    required_scopes = {"POST": "template:write"}
    error_codes = {"POST": (ProjectsErrors.NAME_TAKEN,)}
    serializer_class = TemplateDetailOut

    @extend_schema(request=DuplicateIn, responses={201: TemplateDetailOut})
    def post(self, request, template_id):
        data = DuplicateIn(data=request.data)
        data.is_valid(raise_exception=True)
        template = templates.template_duplicate(source_template_id=template_id, organization=request.organization,
                                                name=data.validated_data.get("name"), actor=request.actor)
        return Response(_detail(request, template.pk), status=status.HTTP_201_CREATED)
