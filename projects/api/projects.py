"""Projects endpoints."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.response import Response

from accounts.api.base import OrganizationAPIView
from config.json_input import StrictSerializer
from projects import selectors, services
from projects.error_codes import ProjectsErrors
from projects.models import Project


class ProjectOut(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email", default=None, allow_null=True)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "created_by", "created_at", "updated_at"]


class ProjectIn(StrictSerializer):
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")


class ProjectListView(mixins.ListModelMixin, OrganizationAPIView):
    required_scopes = {"GET": "project:read", "POST": "project:write"}
    error_codes = {"POST": (ProjectsErrors.NAME_TAKEN,)}
    serializer_class = ProjectOut

    def get_queryset(self):
        return selectors.project_list(search=self.request.query_params.get("search", "")[:120])

    @extend_schema(parameters=[OpenApiParameter("search", str, description="Part of the name")])
    def get(self, request):
        return self.list(request)

    @extend_schema(request=ProjectIn, responses={201: ProjectOut})
    def post(self, request):
        data = ProjectIn(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_create(organization=request.organization, actor=request.actor, **data.validated_data)
        return Response(ProjectOut(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(OrganizationAPIView):
    required_scopes = {"GET": "project:read", "PATCH": "project:write", "DELETE": "project:write"}
    error_codes = {"PATCH": (ProjectsErrors.NAME_TAKEN,)}
    serializer_class = ProjectOut
    lookup_url_kwarg = "project_id"
    access = staticmethod(selectors.access_project)

    def get_queryset(self):
        return selectors.project_list()

    def get(self, request, project_id):
        return Response(ProjectOut(self.get_object()).data)

    @extend_schema(request=ProjectIn(partial=True), responses=ProjectOut)
    def patch(self, request, project_id):
        project = self.get_object()
        data = ProjectIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = services.project_update(project=project, actor=request.actor, **data.validated_data)
        return Response(ProjectOut(project).data)

    def delete(self, request, project_id):
        services.project_delete(project=self.get_object(), actor=request.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
