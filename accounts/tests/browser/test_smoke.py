"""The browser harness works: sign in through the form, see the dashboard, sign out; a missing page
answers the portal's 404 page."""
from __future__ import annotations

import pytest

from accounts.tests.browser.conftest import PASSWORD, screenshot, sign_in, with_password

pytestmark = pytest.mark.browser


def test_sign_in_shows_the_dashboard_and_an_unknown_page_is_a_404(new_context, tenant_a):
    owner = with_password(tenant_a.owner)
    page = new_context().new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto("/")
    assert "/login/" in page.url  # anonymous: to the sign-in form
    screenshot(page, "login")
    sign_in(page, owner)
    assert page.locator("h1").first.is_visible()
    assert owner.email in page.locator("header.top").inner_text()
    screenshot(page, "dashboard-empty")

    # The language switcher: Simplified Chinese, remembered for the next page.
    with page.expect_navigation():
        page.select_option("#language", "zh-hans")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    screenshot(page, "dashboard-empty-zh-hans")
    with page.expect_navigation():
        page.select_option("#language", "en")

    response = page.goto("/no-such-page/")
    assert response.status == 404
    assert page.locator("#error-title").is_visible()
    screenshot(page, "not-found")
    assert not errors, errors


def test_the_admin_and_the_api_docs_work_under_the_content_security_policy(new_context, db):
    """Both run only their own static scripts (the docs' script is a file of its own); the fixture
    fails the test on any refusal the browser reports."""
    from accounts.models import User

    operator = User.objects.create_user(email="operator@platform.test", password=None, is_staff=True,
                                        is_superuser=True)
    with_password(operator)
    page = new_context().new_page()
    page.goto("/api/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
    assert "/api/v1/projects" in page.locator(".swagger-ui").inner_text()
    page.goto("/admin/login/")
    page.fill("#id_username", operator.email)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    assert page.locator("#site-name").is_visible() and "/admin/login/" not in page.url
    page.goto("/admin/accounts/organization/add/")
    assert page.locator("#organization_form").is_visible()
