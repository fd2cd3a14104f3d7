"""Portal pages of the templates library: the two lists, create, edit (a new version), duplicate,
delete; the scopes of each role; another organization's templates; the list's query count."""
from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.audit import Actor
from config.tenancy import dangerously_unscoped, tenant_scope
from projects import templates
from projects.models import Template, TemplateVersion

LIST = "/templates/"
NEW = "/templates/new/"


def detail(template) -> str:
    return f"/templates/{template.pk}/"


def form_data(**changes) -> dict:
    """A valid form as a browser posts it (checkboxes left out when off)."""
    data = {
        "name": "House style", "description": "Our usual teaser", "style": "cinematic", "duration_s": "30",
        "aspect_ratio": "16:9", "resolution": "720p", "shots": "6", "voice": "",
        "providers_text": "offline", "providers_image": "offline", "providers_video": "offline",
        "providers_voice": "offline",
        "prompt_style": "", "prompt_script": "Open on the product.", "prompt_storyboard": "", "prompt_frame": "",
        "prompt_clip": "",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def own_template(tenant, name="Brand teaser", *, is_public=False, settings=None, description="Ours"):
    with tenant_scope(tenant.organization):
        return templates.template_create(organization=tenant.organization, name=name, description=description,
                                         is_public=is_public, settings=settings or {"duration_s": 20, "shots": 4},
                                         actor=Actor(user=tenant.owner))


def versions_of(tenant, template) -> dict[int, dict]:
    with tenant_scope(tenant.organization):
        return {v.version: v.settings for v in TemplateVersion.objects.filter(template_id=template.pk)}


@pytest.fixture
def library(db):
    return templates.ensure_public_library()


@pytest.fixture
def producer(client, tenant_a):
    client.force_login(tenant_a.member("producer"))
    return client


@pytest.fixture
def viewer(client, tenant_a):
    client.force_login(tenant_a.member("viewer"))
    return client


# --- render ------------------------------------------------------------------------------------


def test_list_shows_our_templates_and_the_public_library_in_two_tabs(producer, tenant_a, library):
    mine = own_template(tenant_a)
    page = producer.get(LIST)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="template-tabs"' in body and 'id="own-templates"' in body
    assert f'id="template-card-{mine.pk}"' in body and "Brand teaser" in body and "version 1" in body
    assert f"/jobs/new/?template={mine.pk}" in body  # Use
    assert f"/templates/{mine.pk}/duplicate/" in body and f"/templates/{mine.pk}/edit/" in body
    assert 'id="template-new-link"' in body
    assert library[0].name not in body  # the library's templates are on the other tab

    public = producer.get(LIST + "?tab=public").content.decode()
    assert 'id="public-templates"' in public and "Brand teaser" not in public
    for template in library:
        assert f'id="template-card-{template.pk}"' in public
        assert f"/templates/{template.pk}/duplicate/" in public and f"/jobs/new/?template={template.pk}" in public
        assert f"/templates/{template.pk}/edit/" not in public  # not ours: no Edit
    assert "by Platform library" in public


def test_empty_lists_say_what_to_do(producer, db):
    assert "No templates yet. Create one" in producer.get(LIST).content.decode()
    assert 'id="templates-empty"' in producer.get(LIST + "?tab=public").content.decode()


def test_detail_shows_the_versions_and_the_settings_of_a_chosen_version(producer, tenant_a):
    template = own_template(tenant_a, settings={"duration_s": 20, "shots": 4})
    with tenant_scope(tenant_a.organization):
        templates.template_update(template=template, actor=Actor(user=tenant_a.owner),
                                  settings={"duration_s": 45, "prompts": {"script": "Second take"}})
    current = producer.get(detail(template)).content.decode()
    assert 'id="template-versions"' in current and "Version 1" in current and "Version 2" in current
    assert "Settings of version 2" in current and "45 s" in current and "Second take" in current
    assert 'id="template-edit"' in current and 'id="template-delete"' in current and 'id="template-use"' in current
    first = producer.get(detail(template) + "?version=1").content.decode()
    assert "Settings of version 1" in first and "20 s" in first and "Second take" not in first
    assert 'id="template-old-version"' in first
    assert producer.get(detail(template) + "?version=9").status_code == 404
    assert producer.get(detail(template) + "?version=x").status_code == 404


def test_create_shows_the_settings_errors_on_the_form_then_creates(producer, tenant_a):
    page = producer.get(NEW)
    assert page.status_code == 200 and 'id="template-form"' in page.content.decode()
    assert 'for="template-shots"' in page.content.decode()

    refused = producer.post(NEW, form_data(duration_s="10", shots="24"))
    assert refused.status_code == 400
    body = refused.content.decode()
    assert 'id="template-shots-errors"' in body and "24 shots do not fit in 10 s" in body
    assert 'id="template-form-errors"' in body and 'value="House style"' in body  # the input is kept
    refused = producer.post(NEW, form_data(providers_text="offline, bogus", prompt_clip="x" * 2001))
    body = refused.content.decode()
    assert refused.status_code == 400
    assert 'id="template-providers_text-errors"' in body and "bogus" in body
    assert 'id="template-prompt_clip-errors"' in body
    with tenant_scope(tenant_a.organization):
        assert not Template.objects.exists()

    created = producer.post(NEW, form_data(duration_s="40", providers_image="diffusers, offline"))
    assert created.status_code == 302
    with tenant_scope(tenant_a.organization):
        template = Template.objects.get(name="House style")
    assert created["Location"] == detail(template)
    assert (template.current_version, template.is_public, template.description) == (1, False, "Our usual teaser")
    settings = versions_of(tenant_a, template)[1]
    assert settings["duration_s"] == 40 and settings["shots"] == 6 and settings["style"] == "cinematic"
    assert settings["providers"]["image"] == ["diffusers", "offline"]
    assert settings["prompts"] == {"script": "Open on the product."}

    taken = producer.post(NEW, form_data())
    assert taken.status_code == 400 and 'id="template-name-errors"' in taken.content.decode()


def test_edit_saves_a_new_version_and_version_1_keeps_its_settings(producer, tenant_a):
    template = own_template(tenant_a, settings={"duration_s": 20, "shots": 4, "prompts": {"script": "First"}})
    page = producer.get(f"/templates/{template.pk}/edit/").content.decode()
    assert 'value="20"' in page and "First" in page  # the current version's settings

    saved = producer.post(f"/templates/{template.pk}/edit/", form_data(
        name="Brand teaser", duration_s="50", shots="10", prompt_script="Second"))
    assert saved.status_code == 302 and saved["Location"] == detail(template)
    versions = versions_of(tenant_a, template)
    assert versions[1]["duration_s"] == 20 and versions[1]["prompts"] == {"script": "First"}
    assert versions[2]["duration_s"] == 50 and versions[2]["prompts"] == {"script": "Second"}
    with tenant_scope(tenant_a.organization):
        assert Template.objects.get(pk=template.pk).current_version == 2

    # Settings unchanged: no version 3.
    producer.post(f"/templates/{template.pk}/edit/", form_data(
        name="Brand teaser", description="New words", duration_s="50", shots="10", prompt_script="Second"))
    with tenant_scope(tenant_a.organization):
        template.refresh_from_db()
    assert (template.current_version, template.description) == (2, "New words")

    refused = producer.post(f"/templates/{template.pk}/edit/", form_data(name="Brand teaser", duration_s="999"))
    assert refused.status_code == 400 and 'id="template-duration_s-errors"' in refused.content.decode()
    assert set(versions_of(tenant_a, template)) == {1, 2}


def test_the_form_offers_the_subtitle_look_and_a_form_without_it_keeps_the_current_one(producer, tenant_a):
    template = own_template(tenant_a, settings={"duration_s": 20, "shots": 4, "subtitle_style": {"size": "large"}})
    page = producer.get(f"/templates/{template.pk}/edit/").content.decode()
    assert 'id="template-subtitle-style"' in page
    for field in ("size", "position", "outline", "background"):
        assert f'for="template-subtitle_{field}"' in page
    assert '<option value="large" selected>Large</option>' in page
    assert '<option value="top">Top of the frame</option>' in page and "Thick outline" in page
    assert '<option value="box" selected>Translucent box</option>' in page

    saved = producer.post(f"/templates/{template.pk}/edit/", form_data(
        name="Brand teaser", subtitle_position="top", subtitle_outline="none", subtitle_background="solid"))
    assert saved.status_code == 302
    assert versions_of(tenant_a, template)[2]["subtitle_style"] == {
        "size": "large", "position": "top", "outline": "none", "background": "solid"}
    # A post without the subtitle fields (an older page) keeps the look: no version for it.
    producer.post(f"/templates/{template.pk}/edit/", form_data(name="Brand teaser"))
    assert versions_of(tenant_a, template).keys() == {1, 2}
    refused = producer.post(f"/templates/{template.pk}/edit/", form_data(name="Brand teaser", subtitle_size="huge"))
    assert refused.status_code == 400 and 'id="template-subtitle_size-errors"' in refused.content.decode()

    shown = producer.get(detail(template)).content.decode()
    assert "<dt>Subtitle position</dt><dd>Top of the frame</dd>" in shown and "<dd>Opaque box</dd>" in shown
    producer.cookies["django_language"] = "zh-hans"
    chinese = producer.get(f"/templates/{template.pk}/edit/").content.decode()
    assert "字幕大小" in chinese and "画面顶部" in chinese and "不透明底框" in chinese


def test_duplicate_a_public_template_then_a_taken_name_asks_for_another(producer, tenant_a, library):
    source = library[0]
    copied = producer.post(f"/templates/{source.pk}/duplicate/")
    assert copied.status_code == 302
    with tenant_scope(tenant_a.organization):
        copy = Template.objects.get(name=source.name)
    assert copied["Location"] == detail(copy)
    assert (copy.organization_id, copy.is_public, copy.current_version) == (tenant_a.organization.pk, False, 1)
    assert versions_of(tenant_a, copy)[1]["duration_s"] == 30

    again = producer.post(f"/templates/{source.pk}/duplicate/")
    assert again.status_code == 409
    body = again.content.decode()
    assert 'id="duplicate-name-errors"' in body and f"{source.name} (copy)" in body
    named = producer.post(f"/templates/{source.pk}/duplicate/", {"name": "Our teaser"})
    assert named.status_code == 302
    with tenant_scope(tenant_a.organization):
        assert Template.objects.filter(name="Our teaser").exists()
    # The library's template itself is untouched and cannot be edited or deleted from here.
    assert producer.get(f"/templates/{source.pk}/edit/").status_code == 404
    assert producer.post(f"/templates/{source.pk}/delete/").status_code == 404
    with dangerously_unscoped():
        assert Template.objects.get(pk=source.pk).current_version == 1


def test_delete_asks_for_confirmation_then_deletes(producer, tenant_a):
    template = own_template(tenant_a)
    confirm = producer.get(f"/templates/{template.pk}/delete/")
    assert confirm.status_code == 200 and 'id="template-delete-form"' in confirm.content.decode()
    with tenant_scope(tenant_a.organization):
        assert Template.objects.filter(pk=template.pk).exists()
    deleted = producer.post(f"/templates/{template.pk}/delete/")
    assert deleted.status_code == 302 and deleted["Location"] == LIST
    with tenant_scope(tenant_a.organization):
        assert not Template.objects.filter(pk=template.pk).exists()


# --- roles -------------------------------------------------------------------------------------


def test_viewer_reads_but_sees_no_write_buttons_and_forged_posts_are_refused(viewer, tenant_a, library):
    template = own_template(tenant_a)
    listing = viewer.get(LIST).content.decode()
    assert "Brand teaser" in listing
    for marker in ('id="template-new-link"', "/duplicate/", "/edit/", "/jobs/new/?template="):
        assert marker not in listing
    public = viewer.get(LIST + "?tab=public").content.decode()
    assert library[0].name in public and "/duplicate/" not in public
    page = viewer.get(detail(template)).content.decode()
    for marker in ('id="template-edit"', 'id="template-delete"', 'id="template-duplicate"', 'id="template-use"'):
        assert marker not in page

    assert viewer.get(NEW).status_code == 403
    assert viewer.post(NEW, form_data(name="Forged")).status_code == 403
    assert viewer.post(f"/templates/{template.pk}/edit/", form_data(duration_s="60")).status_code == 403
    assert viewer.post(f"/templates/{library[0].pk}/duplicate/").status_code == 403
    assert viewer.post(f"/templates/{template.pk}/delete/").status_code == 403
    with tenant_scope(tenant_a.organization):
        assert list(Template.objects.values_list("name", "current_version")) == [("Brand teaser", 1)]


def test_reviewer_reads_only(client, tenant_a):
    client.force_login(tenant_a.member("reviewer"))
    assert client.get(LIST).status_code == 200
    assert client.post(NEW, form_data()).status_code == 403


# --- tenants -----------------------------------------------------------------------------------


def test_another_organizations_private_template_is_404_and_never_listed(client, tenant_a, tenant_b):
    private = own_template(tenant_a, "A secret recipe", description="A private notes")
    client.force_login(tenant_b.member("admin"))
    for url in (detail(private), detail(private) + "?version=1", f"/templates/{private.pk}/edit/",
                f"/templates/{private.pk}/duplicate/", f"/templates/{private.pk}/delete/"):
        assert client.get(url).status_code == 404, url
        assert client.post(url, form_data()).status_code == 404, url
    for url in (LIST, LIST + "?tab=public"):
        body = client.get(url).content.decode()
        assert "A secret recipe" not in body and str(private.pk) not in body
    assert versions_of(tenant_a, private) == {1: versions_of(tenant_a, private)[1]}
    with tenant_scope(tenant_b.organization):
        assert not Template.objects.exists()


def test_another_organizations_public_template_is_readable_and_copyable_not_editable(client, tenant_a, tenant_b):
    shared = own_template(tenant_a, "A shared recipe", is_public=True)
    client.force_login(tenant_b.member("producer"))
    assert "A shared recipe" in client.get(LIST + "?tab=public").content.decode()
    page = client.get(detail(shared))
    assert page.status_code == 200
    body = page.content.decode()
    assert "A shared recipe" in body and 'id="template-duplicate"' in body and 'id="template-edit"' not in body
    assert tenant_a.owner.email not in body
    assert client.get(f"/templates/{shared.pk}/edit/").status_code == 404
    assert client.post(f"/templates/{shared.pk}/edit/", form_data(name="Hijacked")).status_code == 404
    assert client.post(f"/templates/{shared.pk}/delete/").status_code == 404
    assert client.post(f"/templates/{shared.pk}/duplicate/").status_code == 302
    with tenant_scope(tenant_a.organization):
        assert Template.objects.get(pk=shared.pk).name == "A shared recipe"
    with tenant_scope(tenant_b.organization):
        assert Template.objects.get().name == "A shared recipe"


# --- query count -------------------------------------------------------------------------------

LIST_QUERY_BOUND = 12


def _count(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("tab", ["own", "public"])
def test_list_query_count_is_fixed_for_2_and_25_templates(producer, tenant_a, tenant_b, tab):
    def add(count, start):
        for number in range(start, start + count):
            own_template(tenant_a, f"Ours {number:02}", is_public=number % 2 == 0)
            own_template(tenant_b, f"Theirs {number:02}", is_public=True)

    add(2, 0)
    few = _count(producer, f"{LIST}?tab={tab}")
    add(23, 2)
    many = _count(producer, f"{LIST}?tab={tab}")
    assert few == many <= LIST_QUERY_BOUND


def test_the_form_offers_a_recurring_character_and_the_detail_says_it(producer, tenant_a):
    page = producer.get(NEW).content.decode()
    assert 'name="recurring_character"' in page and 'id="template-recurring_character"' in page
    created = producer.post(NEW, form_data(name="One lead", recurring_character="on", providers_video="openai"))
    assert created.status_code == 302
    with tenant_scope(tenant_a.organization):
        template = Template.objects.get(name="One lead")
    assert versions_of(tenant_a, template)[1]["recurring_character"] is True
    shown = producer.get(detail(template)).content.decode()
    assert "<dt>Recurring character</dt><dd>Made from the first clip, featured in every later one</dd>" in shown
    edit = producer.get(f"/templates/{template.pk}/edit/").content.decode()
    assert re.search(r'<input type="checkbox" name="recurring_character"[^>]* checked', edit)
    # Unticked (a checkbox left out of the post), it is off in the next version.
    producer.post(f"/templates/{template.pk}/edit/", form_data(name="One lead", providers_video="openai"))
    assert versions_of(tenant_a, template)[2]["recurring_character"] is False
    producer.cookies["django_language"] = "zh-hans"
    chinese = producer.get(f"/templates/{template.pk}/edit/").content.decode()
    assert "让同一个角色在每个镜头中保持一致" in chinese
    assert "<dt>固定角色</dt><dd>无固定角色</dd>" in producer.get(detail(template)).content.decode()
