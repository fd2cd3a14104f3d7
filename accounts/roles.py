"""Roles are code: each role is a named set of scopes.

The API permission class, the portal's checks and API key creation all read `ROLE_SCOPES`.
"""
from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

SCOPES: dict[str, str] = {
    "org:read": "See the organization's settings",
    "org:manage": "Change the organization's name and settings",
    "members:read": "List members and invitations",
    "members:manage": "Invite, change roles, remove members",
    "apikeys:manage": "Create, list and revoke API keys",
    "audit:read": "Read the audit log",
    "project:read": "List and read projects",
    "project:write": "Create, change and delete projects",
    "template:read": "Read generation templates",
    "template:write": "Create and change generation templates",
    "job:read": "List and read jobs and their outputs",
    "job:create": "Start, edit, retry and cancel jobs",
    "job:approve": "Approve jobs waiting for review, or request changes",
    "review:comment": "Comment on job versions, resolve and reopen comments",
    "share:manage": "Create and revoke share links, read their access logs, trace leaked copies",
    "rights:read": "Read content records and registrations",
    "rights:register": "Protect and register content",
    "billing:read": "See spend and budgets",
    "webhooks:manage": "Create and change webhooks",
}


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ADMIN = "admin", _("Admin")
    PRODUCER = "producer", _("Producer")
    REVIEWER = "reviewer", _("Reviewer")
    VIEWER = "viewer", _("Viewer")


_READ = {"org:read", "members:read", "project:read", "template:read", "job:read", "rights:read"}

ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(SCOPES),
    Role.ADMIN: frozenset(SCOPES) - {"org:manage"},
    Role.PRODUCER: frozenset(
        _READ | {"project:write", "template:write", "job:create", "rights:register", "billing:read", "review:comment",
                 "share:manage"}
    ),
    Role.REVIEWER: frozenset(_READ | {"job:approve", "review:comment"}),
    Role.VIEWER: frozenset(_READ),
}


def scopes_for_role(role: str) -> frozenset[str]:
    return ROLE_SCOPES.get(role, frozenset())
