"""Writes of projects, each audited."""
from __future__ import annotations

from django.db import transaction

from accounts.audit import Actor, audit_record, changed, snapshot
from accounts.models import Organization
from config.errors import Conflict
from projects.error_codes import ProjectsErrors
from projects.models import Project

EDITABLE = ["name", "description"]


def _name_taken(*, name: str, exclude: Project | None = None) -> bool:
    queryset = Project.objects.filter(name=name)
    if exclude is not None:
        queryset = queryset.exclude(pk=exclude.pk)
    return queryset.exists()


@transaction.atomic
def project_create(*, organization: Organization, name: str, description: str = "", actor: Actor) -> Project:
    if _name_taken(name=name):
        raise Conflict("A project with this name exists.", code=ProjectsErrors.NAME_TAKEN, fields={"name": ["taken"]})
    project = Project.objects.create(
        organization=organization, name=name, description=description,
        created_by=actor.user if actor.user and actor.user.is_authenticated else None,
    )
    audit_record(actor=actor, action="project.create", target=project, after=snapshot(project, EDITABLE))
    return project


@transaction.atomic
def project_update(*, project: Project, actor: Actor, **fields) -> Project:
    if "name" in fields and _name_taken(name=fields["name"], exclude=project):
        raise Conflict("A project with this name exists.", code=ProjectsErrors.NAME_TAKEN, fields={"name": ["taken"]})
    before = snapshot(project, EDITABLE)
    for name, value in fields.items():
        setattr(project, name, value)
    project.save()
    old, new = changed(before, snapshot(project, EDITABLE))
    if new:
        audit_record(actor=actor, action="project.update", target=project, before=old, after=new)
    return project


@transaction.atomic
def project_delete(*, project: Project, actor: Actor) -> None:
    audit_record(actor=actor, action="project.delete", target=project, before=snapshot(project, EDITABLE))
    project.delete()
