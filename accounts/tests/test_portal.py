"""Portal sign-in, sign-out, the dashboard and the organization switcher."""
from accounts.models import User
from config.tenancy import tenant_scope
from accounts.models import Membership

PASSWORD = "correct horse battery staple"


def make_user(tenant, role="producer"):
    user = User.objects.create_user(email=f"person-{role}@{tenant.slug}.test", password=PASSWORD)
    with tenant_scope(tenant.organization):
        Membership.objects.create(organization=tenant.organization, user=user, role=role)
    return user


def test_sign_in_shows_the_dashboard_of_the_organization_and_sign_out_ends_it(client, tenant_a, tenant_b):
    tenant_a.project("Alpha trailer")
    tenant_b.project("Beta secret")
    user = make_user(tenant_a)
    assert client.get("/").status_code == 302
    response = client.post("/login/", {"email": user.email.upper(), "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/").content.decode()
    assert "Studio STUDIO-A" in page and "Alpha trailer" in page and "Beta secret" not in page
    client.post("/logout/")
    assert client.get("/").status_code == 302


def test_wrong_password_is_refused_and_repeated_failures_are_throttled(client, tenant_a, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    user = make_user(tenant_a)
    for _ in range(3):
        assert client.post("/login/", {"email": user.email, "password": "wrong"}).status_code == 401
    locked = client.post("/login/", {"email": user.email, "password": PASSWORD})
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    assert "Too many failed attempts" in locked.content.decode()


def test_login_redirect_never_leaves_the_site(client, tenant_a):
    user = make_user(tenant_a)
    response = client.post("/login/?next=https://evil.example/", {"email": user.email, "password": PASSWORD})
    assert response["Location"] == "/"


def test_passwords_are_hashed_with_argon2(db):
    user = User.objects.create_user(email="a@b.test", password=PASSWORD)
    assert user.password.startswith("argon2$")


def test_user_in_two_organizations_switches_between_them(client, tenant_a, tenant_b):
    tenant_b.project("Only in B")
    user = make_user(tenant_a)
    with tenant_scope(tenant_b.organization):
        Membership.objects.create(organization=tenant_b.organization, user=user, role="viewer")
    client.force_login(user)
    page = client.get("/").content.decode()
    assert 'name="organization"' in page and "Only in B" not in page
    client.post("/organizations/switch/", {"organization": tenant_b.organization.pk})
    page = client.get("/").content.decode()
    assert "Only in B" in page
    # Switching to an organization the user is not in is refused.
    outsider = User.objects.create_user(email="x@y.test", password=None)
    client.force_login(outsider)
    assert client.post("/organizations/switch/", {"organization": tenant_b.organization.pk}).status_code == 404


def test_security_headers_on_portal_pages(client, db):
    response = client.get("/login/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_invitation_page_creates_the_account_and_signs_in(
    client, tenant_a, mailoutbox, django_capture_on_commit_callbacks
):
    from accounts import services
    from accounts.audit import Actor

    with tenant_scope(tenant_a.organization), django_capture_on_commit_callbacks(execute=True):
        services.invitation_create(organization=tenant_a.organization, email="new@person.test", role="reviewer",
                                   actor=Actor(user=tenant_a.owner))
    link = next(line for line in mailoutbox[0].body.splitlines() if "/invitations/" in line)
    path = link[link.index("/invitations/"):]
    assert "Join Studio STUDIO-A" in client.get(path).content.decode()
    response = client.post(path, {"full_name": "New Person", "password": "short"})
    assert response.status_code == 200 and "too short" in response.content.decode()
    response = client.post(path, {"full_name": "New Person", "password": PASSWORD})
    assert response.status_code == 302
    assert "Studio STUDIO-A" in client.get("/").content.decode()
    assert client.get(path).status_code == 410
