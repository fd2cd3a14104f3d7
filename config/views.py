"""Error pages: JSON under /api/, HTML elsewhere."""
from django.http import JsonResponse
from django.shortcuts import render

from config.api import error_body
from config.error_codes import KernelErrors


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(KernelErrors.NOT_FOUND, "Not found."), status=404)
    return render(request, "404.html", status=404)


def forbidden(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(KernelErrors.PERMISSION_DENIED, "Not allowed."), status=403)
    return render(request, "403.html", status=403)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(KernelErrors.SERVER_ERROR, "Something went wrong on our side."), status=500)
    return render(request, "500.html", status=500)

