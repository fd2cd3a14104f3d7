"""GET /api/v1/health: answers 200 when every required part is up and 503 otherwise (config/health.py
checks the parts)."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from accounts.api.base import PublicAPIView
from accounts.api.permissions import PUBLIC
from config.health import health_report


class HealthView(PublicAPIView):
    required_scopes = {"GET": PUBLIC}
    throttle_classes: list = []

    @extend_schema(
        parameters=[OpenApiParameter(
            "require", str, description="Comma-separated parts whose state sets the status code (e.g. "
            "`database,cache` for a readiness probe, so an outage of the chain node or S3, which only delays "
            "work, does not take every web replica out of service); all parts are still reported.")],
        responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        healthy, parts = health_report()
        wanted = {name.strip() for name in request.query_params.get("require", "").split(",") if name.strip()}
        unknown = wanted - set(parts)
        if unknown:
            raise ValidationError({"require": [f"unknown part: {', '.join(sorted(unknown))}; "
                                               f"parts are {', '.join(parts)}"]})
        if wanted:
            healthy = all(parts[name]["status"] == "ok" for name in wanted)
        return Response(
            {"status": "ok" if healthy else "down", "deployment": settings.DEPLOYMENT, "checks": parts},
            status=200 if healthy else 503,
        )
