"""Budgets (monthly per organization, daily per member) and the content policy."""
from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import pytest

from config.tenancy import tenant_scope
from generation.budgets import BudgetExceeded, budget_check, money, spend_summary
from generation.models import GenerationPolicy, Job, JobStatus
from generation.policy import (
    ContentRefused,
    content_policy_check,
    policy_for,
    script_texts,
    storyboard_texts,
)

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=dt_timezone.utc)


def set_policy(tenant, **fields) -> GenerationPolicy:
    with tenant_scope(tenant.organization):
        return GenerationPolicy.objects.create(organization=tenant.organization, **fields)


def add_job(tenant, *, user=None, cost="0", estimated="0", status=JobStatus.COMPLETED, created_at=NOW) -> Job:
    project = getattr(tenant, "_budget_project", None) or tenant.project(name="Budget project")
    tenant._budget_project = project
    with tenant_scope(tenant.organization):
        return Job.objects.create(
            organization=tenant.organization, project=project, created_by=user or tenant.owner, topic="t",
            status=status, cost=Decimal(cost), estimated_cost=Decimal(estimated), created_at=created_at,
        )


# --- budgets -----------------------------------------------------------------------------------


def test_monthly_budget_refuses_with_the_figures(tenant_a):
    set_policy(tenant_a, monthly_budget=Decimal("100"))
    add_job(tenant_a, user=tenant_a.member("producer"), cost="90")
    with pytest.raises(BudgetExceeded) as refused:
        budget_check(organization=tenant_a.organization, user=tenant_a.owner, estimated_cost=Decimal("15"), now=NOW)
    error = refused.value
    assert (error.code, error.status, error.limit_name) == ("budget_exceeded", 402, "monthly_budget")
    assert "monthly budget" in error.message and "organization" in error.message
    assert "100.00" in error.message and "90.00" in error.message and "15.00" in error.message


def test_under_the_limit_passes(tenant_a):
    set_policy(tenant_a, monthly_budget=Decimal("100"), user_daily_budget=Decimal("20"))
    add_job(tenant_a, user=tenant_a.member("producer"), cost="80")
    add_job(tenant_a, cost="500", created_at=NOW - timedelta(days=30))  # last month
    add_job(tenant_a, cost="10", created_at=NOW - timedelta(days=1))  # yesterday: not in today's budget
    # 90 spent this month; exactly reaching a limit is allowed.
    budget_check(organization=tenant_a.organization, user=tenant_a.owner, estimated_cost=Decimal("10"), now=NOW)
    with pytest.raises(BudgetExceeded):
        budget_check(organization=tenant_a.organization, user=tenant_a.owner, estimated_cost=Decimal("10.01"),
                     now=NOW)


def test_unfinished_jobs_count_at_their_estimate(tenant_a):
    set_policy(tenant_a, monthly_budget=Decimal("50"))
    add_job(tenant_a, cost="5", estimated="30", status=JobStatus.VIDEO_GENERATION)  # counts 30
    add_job(tenant_a, cost="12", estimated="4", status=JobStatus.COMPOSING)  # over its estimate: counts 12
    add_job(tenant_a, cost="1", estimated="40", status=JobStatus.CANCELLED)  # finished: counts its cost, 1
    summary = spend_summary(organization=tenant_a.organization, now=NOW)
    assert summary["month_spent"] == Decimal("43")
    assert summary["month_remaining"] == Decimal("7")
    with pytest.raises(BudgetExceeded, match="43.00"):
        budget_check(organization=tenant_a.organization, user=None, estimated_cost=Decimal("8"), now=NOW)


def test_member_daily_budget(tenant_a):
    set_policy(tenant_a, user_daily_budget=Decimal("20"))
    producer, other = tenant_a.member("producer"), tenant_a.member("producer")
    add_job(tenant_a, user=producer, cost="15", created_at=NOW.replace(hour=1))
    add_job(tenant_a, user=producer, cost="50", created_at=NOW.replace(hour=0) - timedelta(seconds=1))  # yesterday
    add_job(tenant_a, user=other, cost="19")
    with pytest.raises(BudgetExceeded) as refused:
        budget_check(organization=tenant_a.organization, user=producer, estimated_cost=Decimal("6"), now=NOW)
    assert refused.value.limit_name == "user_daily_budget"
    assert "member's daily budget" in refused.value.message
    assert "20.00" in refused.value.message and "15.00" in refused.value.message and "6.00" in refused.value.message
    budget_check(organization=tenant_a.organization, user=producer, estimated_cost=Decimal("5"), now=NOW)
    # Without a user (an API key's job) only the organization's budget applies.
    budget_check(organization=tenant_a.organization, user=None, estimated_cost=Decimal("1000"), now=NOW)


def test_other_organizations_spend_does_not_count(tenant_a, tenant_b):
    set_policy(tenant_a, monthly_budget=Decimal("100"), user_daily_budget=Decimal("50"))
    set_policy(tenant_b, monthly_budget=Decimal("10"))
    add_job(tenant_b, cost="5000", estimated="5000")
    add_job(tenant_b, user=tenant_b.owner, cost="40", status=JobStatus.PENDING, estimated="900")
    budget_check(organization=tenant_a.organization, user=tenant_a.owner, estimated_cost=Decimal("50"), now=NOW)
    assert spend_summary(organization=tenant_a.organization, user=tenant_a.owner, now=NOW)["month_spent"] == 0
    with pytest.raises(BudgetExceeded):
        budget_check(organization=tenant_b.organization, user=tenant_b.owner, estimated_cost=Decimal("1"), now=NOW)


def test_no_policy_or_empty_limits_mean_no_limit(tenant_a, tenant_b):
    add_job(tenant_a, cost="1000000")
    budget_check(organization=tenant_a.organization, user=tenant_a.owner, estimated_cost=Decimal("999999"), now=NOW)
    set_policy(tenant_b)
    add_job(tenant_b, cost="1000000")
    budget_check(organization=tenant_b.organization, user=tenant_b.owner, estimated_cost=Decimal("999999"), now=NOW)
    summary = spend_summary(organization=tenant_a.organization, user=tenant_a.owner, now=NOW)
    assert summary["month_budget"] is None and summary["month_remaining"] is None
    assert summary["day_remaining"] is None and summary["month_spent"] == Decimal("1000000")


def test_budget_check_is_two_queries(tenant_a, django_assert_num_queries):
    set_policy(tenant_a, monthly_budget=Decimal("1000"), user_daily_budget=Decimal("100"))
    for _ in range(5):
        add_job(tenant_a, cost="1", estimated="3", status=JobStatus.IMAGE_GENERATION)
    with django_assert_num_queries(2):
        budget_check(organization=tenant_a.organization, user=tenant_a.owner, estimated_cost=Decimal("1"), now=NOW)


def test_spend_summary(tenant_a):
    set_policy(tenant_a, monthly_budget=Decimal("100"), user_daily_budget=Decimal("10"))
    add_job(tenant_a, cost="2.5")
    add_job(tenant_a, cost="4", created_at=NOW - timedelta(days=2))
    summary = spend_summary(organization=tenant_a.organization, user=tenant_a.owner, now=NOW)
    assert summary["month_start"] == datetime(2026, 5, 1, tzinfo=dt_timezone.utc)
    assert summary["month_spent"] == Decimal("6.5") and summary["month_remaining"] == Decimal("93.5")
    assert summary["day_spent"] == Decimal("2.5") and summary["day_remaining"] == Decimal("7.5")


def test_money_formatting():
    assert [money(Decimal(v)) for v in ("12.5", "0.0042", "100", "3.14159")] == ["12.50", "0.0042", "100.00", "3.1416"]


# --- content policy ----------------------------------------------------------------------------


def test_blocked_term_in_topic_is_refused_naming_the_field(tenant_a):
    set_policy(tenant_a, blocked_terms=["war", "blood bath"])
    with pytest.raises(ContentRefused) as refused:
        content_policy_check(organization_id=tenant_a.organization.pk,
                             texts={"topic": "A film about the WAR of the worlds", "script": "calm"})
    error = refused.value
    assert (error.code, error.status) == ("content_refused", 422)
    assert error.message == 'The topic contains the blocked term "war".'
    with pytest.raises(ContentRefused, match='storyboard shot 3 contains the blocked term "blood bath"'):
        content_policy_check(organization_id=tenant_a.organization.pk,
                             texts={"topic": "fine", "storyboard shot 3": "then a Blood\n  Bath follows"})


@pytest.mark.parametrize("text", ["software", "warfare", "award", "war2", "war_room", "dwarves"])
def test_whole_words_only(tenant_a, text):
    set_policy(tenant_a, blocked_terms=["war"])
    content_policy_check(organization_id=tenant_a.organization.pk, texts={"topic": f"A story about {text}"})


@pytest.mark.parametrize("text", ["war", "War!", "(war)", "anti-war", "ｗａｒ", "w\u200bar", "战争war片"])
def test_whole_word_variants_are_caught(tenant_a, text):
    set_policy(tenant_a, blocked_terms=["war"])
    with pytest.raises(ContentRefused):
        content_policy_check(organization_id=tenant_a.organization.pk, texts={"topic": text})


def test_chinese_terms_match_inside_text(tenant_a):
    set_policy(tenant_a, blocked_terms=["暴力"])
    with pytest.raises(ContentRefused, match='script contains the blocked term "暴力"'):
        content_policy_check(organization_id=tenant_a.organization.pk,
                             texts={"topic": "一个故事", "script": "这是一个充满暴力的故事"})
    content_policy_check(organization_id=tenant_a.organization.pk, texts={"topic": "这是一个和平的故事"})


def test_moderation_callable(tenant_a):
    seen = []

    def moderation(text):
        seen.append(text)
        return ("forbidden" in text, "violence (score 0.97)")

    content_policy_check(organization_id=tenant_a.organization.pk, texts={"topic": "a", "script": "b"},
                         moderation=moderation)
    assert seen == ["a\n\nb"]
    with pytest.raises(ContentRefused) as refused:
        content_policy_check(organization_id=tenant_a.organization.pk,
                             texts={"topic": "x", "script": "the forbidden scene"}, moderation=moderation)
    assert refused.value.message == "Moderation refused the content: violence (score 0.97)."
    assert refused.value.code == "content_refused"


def test_moderation_outage_is_not_waved_through(tenant_a):
    def moderation(text):
        raise TimeoutError("moderation provider did not answer")

    with pytest.raises(TimeoutError):
        content_policy_check(organization_id=tenant_a.organization.pk, texts={"topic": "x"}, moderation=moderation)


def test_policy_is_per_organization(tenant_a, tenant_b):
    set_policy(tenant_b, blocked_terms=["dragon"], monthly_budget=Decimal("5"))
    default = policy_for(tenant_a.organization.pk)
    assert default.pk is None and default.monthly_budget is None and default.blocked_terms == []
    content_policy_check(organization_id=tenant_a.organization.pk, texts={"topic": "a dragon story"})
    with pytest.raises(ContentRefused):
        content_policy_check(organization_id=tenant_b.organization.pk, texts={"topic": "a dragon story"})
    assert policy_for(tenant_b.organization.pk).monthly_budget == Decimal("5")


def test_texts_of_scripts_and_storyboards(tenant_a):
    set_policy(tenant_a, blocked_terms=["heist"])
    script = {"title": "T", "synopsis": "S", "scenes": [{"description": "calm"}, {"narration": "the heist begins"}]}
    storyboard = {"shots": [{"number": 1, "description": "a"}, {"number": 2, "description": "b", "dialogue": "heist"}]}
    with pytest.raises(ContentRefused, match="script scene 2"):
        content_policy_check(organization_id=tenant_a.organization.pk, texts=script_texts(script))
    with pytest.raises(ContentRefused, match="storyboard shot 2"):
        content_policy_check(organization_id=tenant_a.organization.pk, texts=storyboard_texts(storyboard))


def test_the_estimate_counts_the_media_a_remote_provider_bills(tenant_a):
    """An image per shot, the seconds of video and the narration's characters, at the configured prices,
    are counted before the job starts: over the budget, the job is refused (402) with nothing queued."""
    owner = tenant_a.client()
    prices = {"per_image": "0.5", "per_video_second": "0.25", "per_speech_character": "0"}
    assert owner.put("/api/v1/providers/openai", {"api_key": "sk-test", "settings": {"prices": prices}},
                     format="json").status_code in (200, 201)
    assert owner.patch("/api/v1/generation-policy", {"monthly_budget": "5.00", "providers": {
        "image": ["openai", "offline"], "video": ["offline"]}}, format="json").status_code == 200
    project = tenant_a.project("Remote")
    body = {"project": str(project.pk), "topic": "a reusable glass water bottle",
            "options": {"duration_s": 10, "shots": 4, "voice": "none"}}
    accepted = owner.post("/api/v1/jobs", body, format="json")
    assert accepted.status_code == 201, accepted.content
    assert Decimal(accepted.json()["estimated_cost"]) == Decimal("2.0")  # 4 images at 0.5; offline video is free
    assert owner.patch("/api/v1/generation-policy", {"providers": {
        "image": ["openai", "offline"], "video": ["openai", "offline"]}}, format="json").status_code == 200
    refused = owner.post("/api/v1/jobs", {**body, "topic": "a second bottle"}, format="json")
    # 4 images (2.0) and 4 clips rendered 4 s each at 0.25 (4.0), over what is left of the 5.00
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exceeded", refused.content
