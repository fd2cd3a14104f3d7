"""Templates: immutable versions, settings validation, scopes, and the public library across tenants."""
from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.audit import Actor
from accounts.models import AuditEntry, Organization, User
from config.tenancy import dangerously_unscoped, tenant_scope
from config.errors import Conflict, DomainError, NotFound
from projects import templates
from projects.models import Template, TemplateVersion

API = "/api/v1/templates"


def create(client, name="Teaser", settings=None, **fields):
    response = client.post(API, {"name": name, "settings": settings or {}, **fields})
    assert response.status_code == 201, response.json()
    return response.json()


def make_template(tenant, name="Teaser", settings=None, is_public=False):
    with tenant_scope(tenant.organization):
        return templates.template_create(organization=tenant.organization, name=name, settings=settings or {},
                                         is_public=is_public, actor=Actor(user=tenant.owner))


# --- versions ------------------------------------------------------------------------------------


def test_missing_settings_take_the_defaults(tenant_a):
    created = create(tenant_a.client(), settings={"shots": 4})
    assert created["current_version"] == 1 and created["is_own"] is True and created["owner"] == "Studio STUDIO-A"
    assert created["settings"] == {**templates.template_defaults(), "shots": 4}
    assert created["versions"] == [{"version": 1, "created_at": created["versions"][0]["created_at"]}]


def test_a_settings_change_adds_a_version_and_old_versions_stay_as_they_were(tenant_a):
    client = tenant_a.client()
    created = create(client, settings={"style": "cinematic", "prompts": {"script": "Be brief."}})
    url = f"{API}/{created['id']}"

    changed = client.patch(url, {"settings": {"shots": 4, "providers": {"image": ["diffusers", "offline"]},
                                              "prompts": {"frame": "Warm light."}}})
    assert changed.status_code == 200, changed.json()
    body = changed.json()
    assert body["current_version"] == 2
    assert [v["version"] for v in body["versions"]] == [2, 1]
    # Laid over the current version: untouched keys stay, providers and prompts merge per key.
    assert body["settings"]["style"] == "cinematic" and body["settings"]["shots"] == 4
    assert body["settings"]["providers"] == {"text": ["offline"], "image": ["diffusers", "offline"],
                                             "video": ["offline"], "voice": ["offline"]}
    assert body["settings"]["prompts"] == {"script": "Be brief.", "frame": "Warm light."}

    first = client.get(f"{url}/versions/1").json()
    assert first["version"] == 1 and first["name"] == "Teaser"
    assert first["settings"] == created["settings"]
    assert client.get(f"{url}/versions/2").json()["settings"] == body["settings"]

    # A name change or the same settings again add no version; an empty prompt removes one.
    assert client.patch(url, {"name": "Trailer", "settings": {"shots": 4}}).json()["current_version"] == 2
    third = client.patch(url, {"settings": {"prompts": {"script": ""}}}).json()
    assert third["current_version"] == 3 and third["settings"]["prompts"] == {"frame": "Warm light."}
    assert client.get(f"{url}/versions/1").json()["settings"] == created["settings"]  # still as written
    assert client.get(f"{url}/versions/4").status_code == 404

    with tenant_scope(tenant_a.organization):
        stored = {v.version: v.settings for v in TemplateVersion.objects.filter(template_id=created["id"])}
        actions = list(AuditEntry.objects.filter(target_id=created["id"]).order_by("created_at")
                       .values_list("action", "before", "after"))
    assert stored[1] == created["settings"] and sorted(stored) == [1, 2, 3]
    assert [a[0] for a in actions] == ["template.create", "template.update", "template.update", "template.update"]
    assert actions[1][1]["current_version"] == 1 and actions[1][2]["current_version"] == 2
    assert actions[2][1] == {"name": "Teaser"} and actions[2][2] == {"name": "Trailer"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_settings_changes_each_get_their_own_version(tenant_a):
    template = make_template(tenant_a)
    barrier = threading.Barrier(2)
    failures = []

    def change(shots: int) -> None:
        try:
            with tenant_scope(tenant_a.organization):
                barrier.wait(timeout=10)
                templates.template_update(template=template, actor=Actor(user=tenant_a.owner),
                                          settings={"shots": shots})
        except Exception as exc:  # reported below; a thread's exception would be lost
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=change, args=(shots,)) for shots in (3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    with tenant_scope(tenant_a.organization):
        assert Template.objects.get(pk=template.pk).current_version == 3
        shots = sorted(v.settings["shots"] for v in TemplateVersion.objects.filter(template=template, version__gt=1))
    assert shots == [3, 4]


def test_deleting_an_own_template_removes_its_versions(tenant_a):
    client = tenant_a.client()
    created = create(client)
    assert client.delete(f"{API}/{created['id']}").status_code == 204
    assert client.get(f"{API}/{created['id']}").status_code == 404
    with tenant_scope(tenant_a.organization):
        assert not TemplateVersion.objects.filter(template_id=created["id"]).exists()
        assert AuditEntry.objects.filter(target_id=created["id"], action="template.delete").exists()


def test_a_taken_name_is_a_conflict(tenant_a, tenant_b):
    create(tenant_a.client(), name="Same")
    response = tenant_a.client().post(API, {"name": "Same"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "name_taken"
    create(tenant_b.client(), name="Same")  # names are per organization


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, field, nested", [
    ({"aspect_ratio": "4:3"}, "aspect_ratio", None),
    ({"resolution": "4k"}, "resolution", None),
    ({"shots": 25}, "shots", None),
    ({"shots": 0}, "shots", None),
    ({"duration_s": 301}, "duration_s", None),
    ({"duration_s": 5, "shots": 12}, "shots", None),  # 12 shots cannot fit in 5 s
    ({"style": "baroque"}, "style", None),
    ({"providers": {"text": ["gpt-5"]}}, "providers", "text"),
    ({"providers": {"text": ["diffusers"]}}, "providers", "text"),  # diffusers makes no text
    ({"providers": {"image": ["offline", "offline"]}}, "providers", "image"),
    ({"providers": {"video": []}}, "providers", "video"),
    ({"providers": {"music": ["offline"]}}, "providers", "music"),
    ({"prompts": {"script": "x" * 2001}}, "prompts", "script"),
    ({"prompts": {"compose": "louder"}}, "prompts", "compose"),
    ({"aspectratio": "9:16"}, "aspectratio", None),  # a misspelt key is refused, not ignored
    ({"subtitle_style": {"size": "huge"}}, "subtitle_style", "size"),
    ({"subtitle_style": {"position": "middle"}}, "subtitle_style", "position"),
    ({"subtitle_style": {"outline": "glow"}}, "subtitle_style", "outline"),
    ({"subtitle_style": {"background": "blur"}}, "subtitle_style", "background"),
    ({"subtitle_style": {"colour": "yellow"}}, "subtitle_style", "colour"),
])
def test_invalid_settings_are_a_400_in_the_error_shape(tenant_a, bad, field, nested):
    response = tenant_a.client().post(API, {"name": "Bad", "settings": bad})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["message"]
    errors = error["fields"]["settings"][field]
    assert errors and (nested is None or errors[nested])
    with tenant_scope(tenant_a.organization):
        assert not Template.objects.exists()


def test_invalid_settings_on_change_add_no_version(tenant_a):
    client = tenant_a.client()
    created = create(client)
    response = client.patch(f"{API}/{created['id']}", {"settings": {"aspect_ratio": "21:9"}, "name": "Renamed"})
    assert response.status_code == 400 and "aspect_ratio" in response.json()["error"]["fields"]["settings"]
    after = client.get(f"{API}/{created['id']}").json()
    assert after["current_version"] == 1 and after["name"] == "Teaser"


@pytest.mark.parametrize("bad, field", [
    ({"approval_required": "maybe"}, "approval_required"),
    ({"approval_required": 1}, "approval_required"),
    ({"providers": ["offline"]}, "providers"),
    ({"shots": "6"}, "shots"),
    ({"subtitle_style": "large"}, "subtitle_style"),
    ({"subtitle_style": {"size": 2}}, "subtitle_style"),
])
def test_settings_of_the_wrong_json_type_are_a_400(tenant_a, bad, field):
    """The settings' schema states their JSON types; a JSON body is held to them (config.json_input)."""
    response = tenant_a.client().post(API, {"name": "Bad", "settings": bad})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_type" and list(error["fields"]["settings"]) == [field]
    with tenant_scope(tenant_a.organization):
        assert not Template.objects.exists()


def test_settings_that_are_no_object_are_a_400(tenant_a):
    response = tenant_a.client().post(API, {"name": "X", "settings": "16:9"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_type"


@pytest.mark.parametrize("body", [
    {"name": "X", "settings": None}, {"name": ""}, {"settings": {}},
    {"name": "X", "settings": {"voice": "a\x00b"}},
])
def test_malformed_bodies_are_a_400_not_a_500(tenant_a, body):
    response = tenant_a.client().post(API, body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"


def test_settings_validate_keeps_a_version_complete():
    full = templates.template_settings_validate({"shots": "6", "duration_s": 45.0})
    assert full == {**templates.template_defaults(), "shots": 6, "duration_s": 45}
    # An older version missing a key gains the default when laid over.
    assert templates.template_settings_validate({}, base={"shots": 3})["aspect_ratio"] == "16:9"


def test_the_subtitle_style_takes_its_defaults_key_by_key():
    assert templates.template_settings_validate({})["subtitle_style"] == {
        "size": "medium", "position": "bottom", "outline": "thin", "background": "box"}
    assert templates.template_settings_validate({"subtitle_style": {"size": "large"}})["subtitle_style"] == {
        "size": "large", "position": "bottom", "outline": "thin", "background": "box"}
    # A version from before the style existed gains the default look.
    old = {key: value for key, value in templates.template_defaults().items() if key != "subtitle_style"}
    assert templates.template_settings_validate({}, base=old)["subtitle_style"]["size"] == "medium"
    with pytest.raises(DomainError) as refused:
        templates.template_settings_validate({"subtitle_style": {"size": "large", "font": "Arial"}})
    assert refused.value.fields["settings"]["subtitle_style"] == {"font": ["Unknown key."]}


def test_a_subtitle_style_change_merges_over_the_current_version(tenant_a):
    client = tenant_a.client()
    created = create(client, settings={"subtitle_style": {"size": "large", "outline": "thick"}})
    assert created["settings"]["subtitle_style"] == {"size": "large", "position": "bottom", "outline": "thick",
                                                     "background": "box"}
    changed = client.patch(f"{API}/{created['id']}", {"settings": {"subtitle_style": {"position": "top"}}}).json()
    assert changed["current_version"] == 2
    assert changed["settings"]["subtitle_style"] == {"size": "large", "position": "top", "outline": "thick",
                                                     "background": "box"}
    assert client.get(f"{API}/{created['id']}/versions/1").json()["settings"]["subtitle_style"]["position"] == "bottom"


def test_the_api_schema_types_the_subtitle_style(client, db):
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="application/json").json()["components"]["schemas"]
    for name, ref in (("PatchedTemplateSettingsRequest", "SubtitleStyleRequest"),
                      ("TemplateSettings", "SubtitleStyle")):
        assert schema[name]["properties"]["subtitle_style"]["allOf"] == [{"$ref": f"#/components/schemas/{ref}"}]
    request = schema["SubtitleStyleRequest"]
    assert request["additionalProperties"] is False
    assert sorted(request["properties"]) == ["background", "outline", "position", "size"]
    assert schema["SubtitleSizeEnum"]["enum"] == ["small", "medium", "large"]
    assert schema["SubtitlePositionEnum"]["enum"] == ["bottom", "top"]
    assert schema["SubtitleOutlineEnum"]["enum"] == ["none", "thin", "thick"]
    assert schema["SubtitleBackgroundEnum"]["enum"] == ["box", "solid", "none"]


# --- scopes --------------------------------------------------------------------------------------


def test_a_viewer_can_list_and_read_but_not_write(tenant_a):
    template = make_template(tenant_a)
    viewer = tenant_a.client("viewer")
    assert viewer.get(API).status_code == 200
    assert viewer.get(f"{API}/{template.pk}").status_code == 200
    for response in (viewer.post(API, {"name": "New"}), viewer.patch(f"{API}/{template.pk}", {"name": "New"}),
                     viewer.delete(f"{API}/{template.pk}"), viewer.post(f"{API}/{template.pk}/duplicate", {})):
        assert response.status_code == 403 and response.json()["error"]["code"] == "missing_scope"


def test_api_keys_need_the_template_scopes(tenant_a):
    template = make_template(tenant_a)
    reader = tenant_a.key_client(["template:read"])
    assert reader.get(f"{API}/{template.pk}/versions/1").status_code == 200
    assert reader.post(API, {"name": "New"}).json()["error"]["code"] == "missing_scope"
    assert tenant_a.key_client(["project:read"]).get(API).status_code == 403
    assert tenant_a.key_client(["template:read", "template:write"]).post(API, {"name": "New"}).status_code == 201


# --- across organizations ------------------------------------------------------------------------


def test_another_organizations_private_template_is_a_404_like_a_missing_one(tenant_a, tenant_b):
    template = make_template(tenant_a, name="A secret", settings={"prompts": {"script": "A confidential brief"}})
    b = tenant_b.client()
    for template_id in (template.pk, uuid.uuid4()):
        url = f"{API}/{template_id}"
        answers = [b.get(url), b.get(f"{url}/versions/1"), b.patch(url, {"name": "Hijacked"}), b.delete(url),
                   b.post(f"{url}/duplicate", {"name": "Stolen"})]
        for response in answers:
            assert response.status_code == 404
            assert response.json() == {"error": {"code": "not_found", "message": "No such template.", "fields": {}}}
    with tenant_scope(tenant_a.organization):
        assert Template.objects.get(pk=template.pk).name == "A secret"
    with tenant_scope(tenant_b.organization):
        assert not Template.objects.exists()


def test_a_public_template_is_readable_and_duplicable_but_not_writable_by_others(tenant_a, tenant_b):
    Organization.objects.filter(pk=tenant_a.organization.pk).update(public_name="Alpha Films")
    template = make_template(tenant_a, name="Shared", settings={"shots": 6, "aspect_ratio": "9:16"}, is_public=True)
    with tenant_scope(tenant_a.organization):
        templates.template_update(template=template, actor=Actor(user=tenant_a.owner), settings={"shots": 5})
    b = tenant_b.client()
    url = f"{API}/{template.pk}"

    shown = b.get(url)
    assert shown.status_code == 200
    body = shown.json()
    assert body["is_own"] is False and body["owner"] == "Alpha Films" and body["created_by"] is None
    assert body["current_version"] == 2 and body["settings"]["shots"] == 5
    assert [v["version"] for v in body["versions"]] == [2, 1]
    text = shown.content.decode()
    assert tenant_a.owner.email not in text and tenant_a.organization.name not in text and tenant_a.slug not in text
    assert b.get(f"{url}/versions/1").json()["settings"]["shots"] == 6

    assert b.patch(url, {"name": "Hijacked"}).status_code == 404
    assert b.patch(url, {"settings": {"shots": 1}}).status_code == 404
    assert b.delete(url).status_code == 404

    duplicated = b.post(f"{url}/duplicate", {"name": "Our copy"})
    assert duplicated.status_code == 201, duplicated.json()
    copy = duplicated.json()
    assert copy["is_own"] is True and copy["is_public"] is False and copy["current_version"] == 1
    assert copy["settings"] == body["settings"] and copy["owner"] == "Studio STUDIO-B"
    with tenant_scope(tenant_b.organization):
        own = Template.objects.get(pk=copy["id"])
        assert own.organization_id == tenant_b.organization.pk
        assert TemplateVersion.objects.get(template=own).organization_id == tenant_b.organization.pk
        audit = AuditEntry.objects.get(target_id=copy["id"], action="template.duplicate")
        assert audit.after["source"] == {"template_id": str(template.pk), "version": 2, "owner": "Alpha Films"}
    # B edits its copy freely; A's template is untouched.
    assert b.patch(f"{API}/{copy['id']}", {"settings": {"shots": 3}}).json()["current_version"] == 2
    with tenant_scope(tenant_a.organization):
        assert Template.objects.get(pk=template.pk).current_version == 2
    # A second duplicate under the source's name is fine once, then a conflict.
    assert b.post(f"{url}/duplicate", {}).json()["name"] == "Shared"
    assert b.post(f"{url}/duplicate", {}).status_code == 409

    # Once A makes it private again, B loses it; B's copy stays.
    with tenant_scope(tenant_a.organization):
        templates.template_update(template=template, actor=Actor(user=tenant_a.owner), is_public=False)
    assert b.get(url).status_code == 404 and b.get(f"{API}/{copy['id']}").status_code == 200


def test_others_read_only_the_versions_published_publicly_never_the_earlier_private_ones(tenant_a, tenant_b):
    template = make_template(tenant_a, name="Secret recipe", settings={"shots": 6})  # v1, private
    actor = Actor(user=tenant_a.owner)

    def update(**changes):
        with tenant_scope(tenant_a.organization):
            templates.template_update(template=template, actor=actor, **changes)

    update(settings={"shots": 5})                            # v2, private
    update(is_public=True)                                   # v2 published as it stands
    update(settings={"shots": 4})                            # v3, made while public
    update(is_public=False)
    update(settings={"shots": 3})                            # v4, private again
    update(settings={"shots": 2}, is_public=True)            # v5, published with the change
    published, private = [5, 3, 2], [1, 4]

    b = tenant_b.client()
    portal = tenant_b.client()
    url = f"{API}/{template.pk}"
    body = b.get(url).json()
    assert body["current_version"] == 5 and body["settings"]["shots"] == 2
    assert [v["version"] for v in body["versions"]] == published
    for version in published:
        assert b.get(f"{url}/versions/{version}").status_code == 200
        assert portal.get(f"/templates/{template.pk}/?version={version}").status_code == 200
    for version in private:
        response = b.get(f"{url}/versions/{version}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert portal.get(f"/templates/{template.pk}/?version={version}").status_code == 404
        with pytest.raises(NotFound):
            templates.template_get_for_use(organization=tenant_b.organization, template_id=template.pk,
                                           version=version)
    page = portal.get(f"/templates/{template.pk}/").content.decode()
    assert "Version 5" in page and "Version 3" in page and "Version 1" not in page and "Version 4" not in page
    # Its own studio still reads every version.
    a = tenant_a.client()
    assert [v["version"] for v in a.get(url).json()["versions"]] == [5, 4, 3, 2, 1]
    assert all(a.get(f"{url}/versions/{v}").status_code == 200 for v in private)


def test_listing_never_shows_another_organizations_private_templates(tenant_a, tenant_b):
    a_private = make_template(tenant_a, name="A private")
    make_template(tenant_a, name="A public", is_public=True)
    b_private = make_template(tenant_b, name="B private")
    make_template(tenant_b, name="B public", is_public=True)

    def listed(client, scope=None):
        response = client.get(API, {"scope": scope} if scope else {})
        assert response.status_code == 200, response.json()
        return [(row["name"], row["is_own"]) for row in response.json()["results"]]

    b = tenant_b.client()
    assert listed(b) == [("B private", True), ("B public", True), ("A public", False)]  # own first
    assert listed(b, "all") == listed(b)
    assert listed(b, "own") == [("B private", True), ("B public", True)]
    assert listed(b, "public") == [("B public", True), ("A public", False)]
    assert listed(tenant_a.client("viewer")) == [("A private", True), ("A public", True), ("B public", False)]
    assert b.get(API, {"scope": "everything"}).status_code == 400
    for scope in ("all", "public"):
        assert str(a_private.pk) not in b.get(API, {"scope": scope}).content.decode()
    assert str(b_private.pk) not in tenant_a.client().get(API).content.decode()


def test_listing_pages_in_the_database(tenant_a, tenant_b):
    for number in range(3):
        make_template(tenant_a, name=f"A public {number}", is_public=True)
    make_template(tenant_b, name="B own")
    with tenant_scope(tenant_b.organization):
        listing = templates.template_list(organization=tenant_b.organization, scope="all")
        with CaptureQueriesContext(connection) as queries:
            assert listing.count() == 4
            page = listing[1:3]
            assert [t.organization.public_name for t in page] == ["Studio STUDIO-A"] * 2
    assert len(queries) == 2  # a count and one page, organizations joined
    with pytest.raises(DomainError):
        templates.template_list(organization=tenant_b.organization, scope="mine")


def test_reading_a_template_costs_two_queries(tenant_a, tenant_b):
    template = make_template(tenant_a, is_public=True)
    with tenant_scope(tenant_b.organization), CaptureQueriesContext(connection) as queries:
        current = templates.template_get_for_use(organization=tenant_b.organization, template_id=template.pk)
        templates.template_version_list(organization=tenant_b.organization, template=current.template)
        assert current.template.organization.public_name and current.template.created_by.email
    assert len(queries) == 2


def test_an_out_of_range_version_or_a_malformed_id_is_a_404(tenant_a):
    template = make_template(tenant_a)
    client = tenant_a.client()
    assert client.get(f"{API}/{template.pk}/versions/{2 ** 70}").status_code == 404
    assert client.get(f"{API}/{template.pk}/versions/0").status_code == 404
    with tenant_scope(tenant_a.organization), pytest.raises(NotFound):
        templates.template_get_for_use(organization=tenant_a.organization, template_id="not-a-uuid")


# --- what a job records --------------------------------------------------------------------------


def test_a_job_references_its_own_template_and_only_snapshots_a_foreign_public_one(tenant_a, tenant_b):
    own = make_template(tenant_b, name="B own", settings={"shots": 3})
    public = make_template(tenant_a, name="A public", settings={"approval_required": True}, is_public=True)
    private = make_template(tenant_a, name="A private")
    with tenant_scope(tenant_b.organization):
        version, snapshot = templates.template_for_job(organization=tenant_b.organization, template_id=own.pk)
        assert version.organization_id == tenant_b.organization.pk and version.version == 1
        assert snapshot == {"template_id": str(own.pk), "name": "B own", "version": 1,
                            "settings": {**templates.template_defaults(), "shots": 3}, "owner": "Studio STUDIO-B"}

        version, snapshot = templates.template_for_job(organization=tenant_b.organization, template_id=public.pk)
        assert version is None
        assert snapshot["template_id"] == str(public.pk) and snapshot["settings"]["approval_required"] is True

        with pytest.raises(NotFound):
            templates.template_for_job(organization=tenant_b.organization, template_id=private.pk)
        # Another organization's template cannot be changed through the services either.
        with pytest.raises(NotFound):
            templates.template_update(template=public, actor=Actor(user=tenant_b.owner), name="Hijacked")


# --- the public library --------------------------------------------------------------------------


def test_the_public_library_is_created_once(tenant_a):
    first = templates.ensure_public_library()
    second = templates.ensure_public_library()
    assert [t.pk for t in first] == [t.pk for t in second] and len(first) == 3
    library = Organization.objects.get(slug="platform")
    assert User.objects.filter(email="library@platform.local").count() == 1
    assert not User.objects.get(email="library@platform.local").has_usable_password()
    with dangerously_unscoped():
        assert Template.objects.filter(organization=library).count() == 3
        assert all(t.is_public and t.organization_id == library.pk for t in second)
        assert TemplateVersion.objects.filter(organization=library).count() == 3

    listed = tenant_a.client("viewer").get(API, {"scope": "public"}).json()["results"]
    assert {row["name"] for row in listed} == {entry["name"] for entry in templates.LIBRARY}
    assert {row["owner"] for row in listed} == {"Platform library"}
    documentary = next(row for row in listed if row["name"].startswith("Documentary"))
    detail = tenant_a.client("viewer").get(f"{API}/{documentary['id']}").json()
    assert detail["settings"]["approval_required"] is True and detail["settings"]["duration_s"] == 60


def test_the_library_is_never_published_from_a_studio_that_took_its_slug(db):
    from accounts import services

    owner = User.objects.create_user(email="owner@squatter.test", password=None)
    services.organization_create(name="Squatter", slug="platform", owner=owner)
    with pytest.raises(Conflict):
        templates.ensure_public_library()
    with dangerously_unscoped():
        assert not Template.objects.exists()


def test_a_recurring_character_is_a_typed_setting_off_by_default(tenant_a):
    assert templates.template_defaults()["recurring_character"] is False
    # A version from before the setting existed gains it, off.
    old = {key: value for key, value in templates.template_defaults().items() if key != "recurring_character"}
    assert templates.template_settings_validate({}, base=old)["recurring_character"] is False
    client = tenant_a.client()
    assert create(client, settings={"recurring_character": True})["settings"]["recurring_character"] is True
    refused = client.post(API, {"name": "Bad", "settings": {"recurring_character": "yes"}})
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]["settings"]) == ["recurring_character"]
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="application/json").json()["components"]["schemas"]
    for name in ("TemplateSettings", "PatchedTemplateSettingsRequest"):
        assert schema[name]["properties"]["recurring_character"]["type"] == "boolean"
        assert schema[name]["properties"]["recurring_character"]["default"] is False
