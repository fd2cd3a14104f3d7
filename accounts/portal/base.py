"""What every portal view shares: who acts, and how a refused action is shown.

Portal views are thin, like API views: they read through selectors, act through services, and
check scopes with `accounts.decorators.requires_scope` (the same role map as the API)."""
from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator

from accounts.audit import Actor, client_ip
from config.errors import DomainError

PAGE_SIZE = 25


def portal_actor(request) -> Actor:
    """The signed-in member acting in the active organization."""
    return Actor(user=request.user, ip_address=client_ip(request), scopes=request.scopes)


def form_refused(form, exc: DomainError) -> None:
    """Put a service's refusal on the form: field messages where it names fields, else at the top."""
    for field, problems in (exc.fields or {}).items():
        for problem in problems if isinstance(problems, (list, tuple)) else [problems]:
            form.add_error(field if field in form.fields else None, str(problem))
    if not exc.fields:
        form.add_error(None, exc.message)


def form_submit(form, call):
    """What `call(form.cleaned_data)` returns when the form is valid. A service's refusal is put on the form
    instead (form_refused), so that afterwards `form.is_valid()` says whether the action was done."""
    if form.is_valid():
        try:
            return call(form.cleaned_data)
        except DomainError as exc:
            form_refused(form, exc)
    return None


def flash_refused(request, exc: DomainError) -> None:
    messages.error(request, exc.message)


def page_of(request, queryset, size: int = PAGE_SIZE):
    """One page of a list (`?page=`), so that a page's query count never grows with the list."""
    return Paginator(queryset, size).get_page(request.GET.get("page"))
