"""The accounts app's error codes: sign-in, API keys, members, invitations, grants."""
from config.error_codes import ErrorCode


class AccountsErrors(ErrorCode):
    # Credentials and access (any operation that needs them can answer these).
    INVALID_API_KEY = "invalid_api_key", 401, "The Authorization header or the API key is malformed or unknown.", True
    API_KEY_REVOKED = "api_key_revoked", 401, "The API key was revoked.", True
    MISSING_SCOPE = "missing_scope", 403, "The key or member lacks the scope this operation needs.", True
    ORGANIZATION_SUSPENDED = "organization_suspended", 403, "The organization is suspended.", True
    LOGIN_LOCKED = "login_locked", 429, "Too many failed sign-ins; `Retry-After` says when to try again."
    # Users and organizations.
    EMAIL_TAKEN = "email_taken", 409, "A user with this email already exists."
    WEAK_PASSWORD = "weak_password", 400, "The password is too weak; `error.fields.password` says why."
    SLUG_TAKEN = "slug_taken", 409, "The organization's slug is taken."
    # Members, roles and grants.
    SCOPE_NOT_HELD = "scope_not_held", 400, "Nobody grants scopes they do not hold themselves."
    OWNER_REQUIRED = "owner_required", 403, "Only an owner can grant, change or remove the owner role."
    LAST_OWNER = "last_owner", 409, "An organization always keeps an owner."
    ALREADY_MEMBER = "already_member", 409, "This person is already a member."
    # Invitations.
    ALREADY_INVITED = "already_invited", 409, "A pending invitation exists for this email."
    INVITATION_NOT_FOUND = "invitation_not_found", 404, "This invitation does not exist."
    INVITATION_USED = "invitation_used", 410, "This invitation was already accepted."
    INVITATION_EXPIRED = "invitation_expired", 410, "This invitation has expired (409 when revoking it)."
    INVITATION_ACCEPTED = "invitation_accepted", 409, "The invitation was accepted; it can no longer be revoked."
    INVITATION_REVOKED = "invitation_revoked", 409, "The invitation was already revoked."
    SIGN_IN_REQUIRED = "sign_in_required", 401, "An account exists for this email: sign in, then open the invitation."
    INVITATION_EMAIL_MISMATCH = "invitation_email_mismatch", 403, "The invitation was sent to another email address."
