from accounts.selectors import memberships_of_user


def organization(request):
    """The active organization and the user's others, for the header's switcher."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or request.path.startswith("/admin/"):
        return {}
    return {
        "organization": getattr(request, "organization", None),
        "membership": getattr(request, "membership", None),
        "scopes": getattr(request, "scopes", frozenset()),
        "memberships": lambda: memberships_of_user(user=user),
    }
