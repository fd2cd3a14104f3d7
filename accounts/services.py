"""Writes of the accounts app: organizations, members, invitations, API keys, sign-in throttling.

Views check scopes; these functions enforce the business rules (an organization keeps an owner,
nobody hands out more than they hold) and write the audit log.
"""
from __future__ import annotations

import math
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.api.throttling import rate_hits
from accounts.audit import Actor, audit_record, changed, client_ip, snapshot
from accounts.counters import counter_delete, counter_read, counters_incr
from accounts.error_codes import AccountsErrors
from accounts.live_sessions import member_group, organization_sessions_group, sessions_end
from accounts.models import ApiKey, Invitation, Membership, Organization, User
from accounts.roles import SCOPES, Role, scopes_for_role
from accounts.signals import organization_reinstated
from accounts.tokens import api_key_generate, token_digest
from config.errors import Conflict, DomainError, Forbidden, NotFound
from config.tenancy import dangerously_unscoped, tenant_scope

# --- users -------------------------------------------------------------------------------------


def user_create(*, email: str, password: str | None, full_name: str = "") -> User:
    email = User.objects.normalize_email(email).lower()
    if User.objects.filter(email=email).exists():
        raise Conflict("A user with this email already exists.",
                       code=AccountsErrors.EMAIL_TAKEN, fields={"email": ["taken"]})
    if password is not None:
        try:
            validate_password(password, User(email=email, full_name=full_name))
        except ValidationError as exc:
            raise DomainError("The password is too weak.",
                              code=AccountsErrors.WEAK_PASSWORD, fields={"password": exc.messages})
    return User.objects.create_user(email=email, password=password, full_name=full_name)


# --- organizations -----------------------------------------------------------------------------


@transaction.atomic
def organization_create(*, name: str, slug: str, owner: User, public_name: str = "", actor: Actor | None = None):
    if Organization.objects.filter(slug=slug).exists():
        raise Conflict(f"The slug {slug!r} is taken.", code=AccountsErrors.SLUG_TAKEN, fields={"slug": ["taken"]})
    organization = Organization(name=name, slug=slug, public_name=public_name or name)
    organization.full_clean()
    organization.save()
    with tenant_scope(organization):
        Membership.objects.create(organization=organization, user=owner, role=Role.OWNER)
        audit_record(
            actor=actor or Actor(user=owner),
            action="organization.create",
            target=organization,
            after=snapshot(organization),
        )
    return organization


ORGANIZATION_EDITABLE = ("name", "public_name")


def organization_update(*, organization: Organization, actor: Actor, **fields) -> Organization:
    before = snapshot(organization, list(ORGANIZATION_EDITABLE))
    for name, value in fields.items():
        if name not in ORGANIZATION_EDITABLE:
            raise DomainError(f"{name} cannot be changed.", fields={name: ["read only"]})
        setattr(organization, name, value)
    organization.full_clean()
    organization.save(update_fields=list(fields) or None)
    old, new = changed(before, snapshot(organization, list(ORGANIZATION_EDITABLE)))
    if new:
        audit_record(actor=actor, action="organization.update", target=organization, before=old, after=new)
    return organization


@transaction.atomic
def organization_set_suspended(*, organization: Organization, suspended: bool, actor: Actor, reason: str = ""):
    """Suspend or reinstate a studio; while suspended its users and keys get 403 everywhere, its open
    websockets close, and workers start none of its steps (they wait, queued, for the reinstatement)."""
    if organization.is_suspended == suspended:
        return organization
    before = snapshot(organization, ["is_suspended", "suspended_reason"])
    organization.is_suspended = suspended
    organization.suspended_at = timezone.now() if suspended else None
    organization.suspended_reason = reason if suspended else ""
    organization.save(update_fields=["is_suspended", "suspended_at", "suspended_reason"])
    with tenant_scope(organization):
        audit_record(
            actor=actor,
            action="organization.suspend" if suspended else "organization.reinstate",
            target=organization,
            before=before,
            after=snapshot(organization, ["is_suspended", "suspended_reason"]),
        )
    if suspended:
        sessions_end(group=organization_sessions_group(organization.pk), reason="organization_suspended")
    else:
        # The generation app wakes the steps that waited (generation/apps.py); after the commit, so
        # that a worker claiming them sees the organization reinstated.
        transaction.on_commit(
            lambda: organization_reinstated.send(sender=Organization, organization_id=organization.pk))
    return organization


# --- grants ------------------------------------------------------------------------------------


def actor_scopes(*, actor: Actor, organization_id: int) -> frozenset[str]:
    """What the actor holds here: its key's or request's scopes; an actor named by a user alone
    (commands, tests) holds that member's role; the bare system actor holds nothing."""
    if actor.scopes or actor.api_key is not None:
        return frozenset(actor.scopes)
    role = _actor_role(actor, organization_id)
    return scopes_for_role(role) if role else frozenset()


def grant_check(*, actor: Actor, scopes, organization_id: int, what: str = "scopes") -> None:
    """Nobody hands out more than they hold: every grant (an invitation's role, a new role, a key's
    scopes) passes through here, so the rule and its error are the same everywhere."""
    beyond = sorted(set(scopes) - actor_scopes(actor=actor, organization_id=organization_id))
    if beyond:
        raise DomainError(
            "You cannot grant scopes you do not hold yourself.",
            code=AccountsErrors.SCOPE_NOT_HELD,
            fields={what: [f"not held: {', '.join(beyond)}"]},
        )


# --- members -----------------------------------------------------------------------------------


def _actor_role(actor: Actor, organization_id: int) -> str | None:
    if actor.user is None or not actor.user.is_authenticated:
        return None
    membership = Membership.objects.filter(organization_id=organization_id, user=actor.user).first()
    return membership.role if membership else None


def _check_owner_rules(*, actor: Actor, membership: Membership, new_role: str | None) -> None:
    """Only owners touch the owner role, and the last owner can't be demoted or removed."""
    touches_owner = membership.role == Role.OWNER or new_role == Role.OWNER
    if touches_owner and _actor_role(actor, membership.organization_id) != Role.OWNER:
        raise Forbidden("Only an owner can grant, change or remove the owner role.", code=AccountsErrors.OWNER_REQUIRED)
    if membership.role == Role.OWNER and new_role != Role.OWNER:
        owners = Membership.objects.select_for_update().filter(
            organization_id=membership.organization_id, role=Role.OWNER
        )
        if len(owners) <= 1:
            raise Conflict("An organization always keeps an owner.", code=AccountsErrors.LAST_OWNER)


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, actor: Actor) -> Membership:
    if role not in Role.values:
        raise DomainError("Unknown role.", fields={"role": [f"one of {', '.join(Role.values)}"]})
    if role == membership.role:
        return membership
    _check_owner_rules(actor=actor, membership=membership, new_role=role)
    # Both ways: no promoting anyone above yourself, and no demoting someone who holds more than you.
    grant_check(actor=actor, scopes=scopes_for_role(role) | scopes_for_role(membership.role),
                organization_id=membership.organization_id, what="role")
    before = {"role": membership.role}
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(actor=actor, action="member.role_change", target=membership, before=before, after={"role": role})
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Actor) -> None:
    _check_owner_rules(actor=actor, membership=membership, new_role=None)
    grant_check(actor=actor, scopes=scopes_for_role(membership.role), organization_id=membership.organization_id,
                what="role")
    audit_record(
        actor=actor,
        action="member.remove",
        target=membership,
        before={"user": membership.user.email, "role": membership.role},
    )
    sessions_end(group=member_group(membership.organization_id, membership.user_id), reason="membership_removed")
    membership.delete()


# --- invitations ---------------------------------------------------------------------------------


def invitation_create(*, organization: Organization, email: str, role: str, actor: Actor) -> tuple[Invitation, str]:
    """Invite by email; returns the invitation and its token, which is mailed and never stored."""
    email = User.objects.normalize_email(email).lower()
    if role not in Role.values:
        raise DomainError("Unknown role.", fields={"role": [f"one of {', '.join(Role.values)}"]})
    if role == Role.OWNER and _actor_role(actor, organization.pk) != Role.OWNER:
        raise Forbidden("Only an owner can invite another owner.", code=AccountsErrors.OWNER_REQUIRED)
    grant_check(actor=actor, scopes=scopes_for_role(role), organization_id=organization.pk, what="role")
    if Membership.objects.filter(organization=organization, user__email=email).exists():
        raise Conflict("This person is already a member.",
                       code=AccountsErrors.ALREADY_MEMBER, fields={"email": ["member"]})
    if Invitation.objects.filter(
        organization=organization, email=email, accepted_at=None, revoked_at=None, expires_at__gt=timezone.now()
    ).exists():
        raise Conflict("A pending invitation exists for this email.", code=AccountsErrors.ALREADY_INVITED)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        token_hash=token_digest(token),
        invited_by=actor.user if actor.user and actor.user.is_authenticated else None,
        expires_at=timezone.now() + timedelta(hours=settings.INVITATION_TTL_HOURS),
    )
    audit_record(actor=actor, action="invitation.create", target=invitation, after={"email": email, "role": role})
    link = f"{settings.PUBLIC_BASE_URL}/invitations/{token}/"
    transaction.on_commit(
        lambda: send_mail(
            subject=f"You are invited to {organization.name}",
            message=f"You were invited to join {organization.name} as {role}.\n\nAccept: {link}\n\n"
            f"The link expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC.",
            from_email=None,
            recipient_list=[email],
        )
    )
    return invitation, token


NOT_PENDING = {"accepted": AccountsErrors.INVITATION_ACCEPTED, "revoked": AccountsErrors.INVITATION_REVOKED,
               "expired": AccountsErrors.INVITATION_EXPIRED}


def invitation_revoke(*, invitation: Invitation, actor: Actor) -> Invitation:
    if invitation.status != "pending":
        # Revoking one that is no longer pending conflicts with its state (409 whatever the state's code).
        raise Conflict(f"The invitation is {invitation.status}.", code=NOT_PENDING[invitation.status], status=409)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_record(actor=actor, action="invitation.revoke", target=invitation)
    return invitation


def invitation_by_token(token: str) -> Invitation:
    """The pending invitation behind a token, whatever its organization (the token is the proof)."""
    with dangerously_unscoped():
        invitation = Invitation.objects.select_related("organization").filter(token_hash=token_digest(token)).first()
    if invitation is None or invitation.revoked_at:
        raise NotFound("This invitation does not exist.", code=AccountsErrors.INVITATION_NOT_FOUND)
    if invitation.accepted_at:
        raise DomainError("This invitation was already accepted.", code=AccountsErrors.INVITATION_USED)
    if invitation.expires_at <= timezone.now():
        raise DomainError("This invitation has expired; ask for a new one.", code=AccountsErrors.INVITATION_EXPIRED)
    return invitation


@transaction.atomic
def invitation_accept(
    *, token: str, user: User | None = None, password: str | None = None, full_name: str = "", ip: str | None = None
) -> Membership:
    """Accept as the signed-in user, or create the invited person's account with a password."""
    invitation = invitation_by_token(token)
    if user is None or not user.is_authenticated:
        if User.objects.filter(email=invitation.email).exists():
            raise DomainError(
                "An account exists for this email: sign in, then open the invitation again.",
                    code=AccountsErrors.SIGN_IN_REQUIRED,
            )
        if not password:
            raise DomainError("Choose a password.", fields={"password": ["required"]})
        user = user_create(email=invitation.email, password=password, full_name=full_name)
    elif user.email.lower() != invitation.email:
        raise Forbidden("This invitation was sent to another email address.",
                        code=AccountsErrors.INVITATION_EMAIL_MISMATCH)
    with tenant_scope(invitation.organization_id):
        if Membership.objects.filter(user=user).exists():
            raise Conflict("You are already a member.", code=AccountsErrors.ALREADY_MEMBER)
        membership = Membership.objects.create(organization_id=invitation.organization_id, user=user, role=invitation.role)
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit_record(
            actor=Actor(user=user, ip_address=ip),
            action="invitation.accept",
            target=membership,
            after={"user": user.email, "role": membership.role},
        )
    return membership


# --- API keys ------------------------------------------------------------------------------------


def api_key_create(*, organization: Organization, name: str, scopes: list[str], actor: Actor) -> tuple[ApiKey, str]:
    """Create a key with no more scopes than its creator holds; returns the key's only plain copy."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise DomainError("Unknown scopes.", fields={"scopes": [f"unknown: {', '.join(unknown)}"]})
    if not scopes:
        raise DomainError("Give the key at least one scope.", fields={"scopes": ["required"]})
    grant_check(actor=actor, scopes=scopes, organization_id=organization.pk)
    for _ in range(5):
        prefix, last_four, plain = api_key_generate()
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    organization=organization,
                    name=name,
                    prefix=prefix,
                    last_four=last_four,
                    key_hash=token_digest(plain),
                    scopes=sorted(set(scopes)),
                    created_by=actor.user if actor.user and actor.user.is_authenticated else None,
                )
                audit_record(actor=actor, action="apikey.create", target=key, after={"name": name, "scopes": key.scopes})
            return key, plain
        except IntegrityError:  # prefix collision, astronomically rare
            continue
    raise RuntimeError("could not allocate a unique API key prefix")


def api_key_revoke(*, key: ApiKey, actor: Actor) -> ApiKey:
    if key.revoked_at:
        return key
    key.revoked_at = timezone.now()
    key.revoked_by = actor.user if actor.user and actor.user.is_authenticated else None
    key.save(update_fields=["revoked_at", "revoked_by"])
    audit_record(actor=actor, action="apikey.revoke", target=key, before={"active": True}, after={"active": False})
    return key


LAST_USE_RESOLUTION_S = 60


def api_key_touch(*, key: ApiKey, ip: str | None) -> None:
    """Record last use, at most once a minute per key so reads don't turn into writes."""
    now = timezone.now()
    if key.last_used_at and (now - key.last_used_at).total_seconds() < LAST_USE_RESOLUTION_S:
        return
    with dangerously_unscoped():
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now, last_used_ip=ip)
    key.last_used_at, key.last_used_ip = now, ip


# --- sign-in throttling --------------------------------------------------------------------------


def _login_keys(email: str, ip: str | None) -> list[str]:
    return [f"login-failures:{token_digest(email.lower())[:32]}:{ip}", f"login-failures-ip:{ip}"]


class LoginLocked(DomainError):
    """Too many failed sign-ins for this email from this address (or from this address at all)."""

    code = AccountsErrors.LOGIN_LOCKED

    def __init__(self, retry_after: int):
        super().__init__("Too many failed attempts; try again later.")
        self.retry_after = retry_after


def login_authenticate(*, request, email: str, password: str) -> User | None:
    """The one sign-in check of every login form (the portal's, the operators' admin): refused while
    locked (LoginLocked), a wrong password counts a failure, a right one clears the email's count.
    Returns the user, or None for a wrong email or password."""
    email, ip = email.lower(), client_ip(request)
    wait = login_retry_after(email=email, ip=ip)
    if wait:
        raise LoginLocked(wait)
    user = authenticate(request, username=email, password=password)
    if user is None:
        login_record_failure(email=email, ip=ip)
    else:
        login_clear_failures(email=email, ip=ip)
    return user


def login_retry_after(*, email: str, ip: str | None) -> int:
    """Seconds until this email may try again from this address; 0 when it may now. Every sign-in
    form (the portal's and the operators' admin) asks here first."""
    limit = settings.LOGIN_FAILURE_LIMIT
    (per_pair, pair_left), (per_ip, ip_left) = (counter_read(key) for key in _login_keys(email, ip))
    waits = [left for count, left, most in ((per_pair, pair_left, limit), (per_ip, ip_left, limit * 10))
             if count >= most]
    return max(1, math.ceil(max(waits))) if waits else 0


def login_record_failure(*, email: str, ip: str | None) -> None:
    # Counted atomically: parallel guesses each count, so none slips past the limit.
    counters_incr([(key, settings.LOGIN_FAILURE_WINDOW_S) for key in _login_keys(email, ip)])


def login_clear_failures(*, email: str, ip: str | None) -> None:
    counter_delete(_login_keys(email, ip)[0])


# --- password reset ------------------------------------------------------------------------------


def password_reset_allowed(*, email: str, ip: str | None) -> bool:
    """Whether a reset mail may go out: counted per address and per client address whether or not an
    account exists, so the limit (like the answer) says nothing about who has one."""

    return rate_hits([
        ("password_reset_email", token_digest(email.lower())[:32], settings.PASSWORD_RESET_RATE_PER_EMAIL),
        ("password_reset_ip", ip or "unknown", settings.PASSWORD_RESET_RATE_PER_IP),
    ]) == 0
