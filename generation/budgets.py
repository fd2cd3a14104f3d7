"""Spend limits: an organization's monthly budget and each member's daily budget (UTC calendar).

Spend counts every job created in the period: the cost of finished jobs, and for unfinished ones
the larger of what they cost so far and their estimate, since that is what they are about to cost.
A refused job answers 402 (`budget_exceeded`): a limit on money, distinct from 409 state conflicts,
so clients can tell "raise the budget or wait" from "retry differently".
"""
from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone
from decimal import Decimal

from django.db import transaction
from django.db.models import Case, DecimalField, F, Q, Sum, Value, When
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from config.errors import DomainError
from config.tenancy import tenant_scope
from generation.error_codes import GenerationErrors
from generation.models import TERMINAL_JOB_STATUSES, GenerationPolicy, Job

ZERO = Decimal("0")
_MONEY = DecimalField(max_digits=14, decimal_places=4)


class BudgetExceeded(DomainError):
    code = GenerationErrors.BUDGET_EXCEEDED

    def __init__(self, *, limit_name: str, label: str, limit: Decimal, spent: Decimal, estimated_cost: Decimal):
        message = (
            f"This job's estimated cost of {money(estimated_cost)} would exceed {label} of {money(limit)}: "
            f"{money(spent)} is already spent or committed."
        )
        super().__init__(message, fields={"estimated_cost": [message]})
        self.limit_name, self.limit, self.spent, self.estimated_cost = limit_name, limit, spent, estimated_cost


def money(amount: Decimal) -> str:
    """At least two decimals, at most four, e.g. 12.50 or 0.0042."""
    amount = Decimal(amount).quantize(Decimal("0.0001"))
    text = f"{amount:f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


def period_starts(now: datetime | None = None) -> tuple[datetime, datetime]:
    """Start of the current UTC month and UTC day."""
    now = (now or timezone.now()).astimezone(dt_timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day.replace(day=1), day


def _committed_cost():
    """Per job: its cost when finished, else the larger of its cost so far and its estimate."""
    return Case(
        When(status__in=list(TERMINAL_JOB_STATUSES), then=F("cost")),
        default=Greatest(F("cost"), F("estimated_cost")),
        output_field=_MONEY,
    )


def _spent(*, user=None, now: datetime | None = None) -> tuple[Decimal, Decimal]:
    """(this month's organization spend, today's spend by `user`) in one query, in the active scope."""
    month_start, day_start = period_starts(now)
    user_id = getattr(user, "pk", None)
    sums = {"month": Sum(_committed_cost())}
    if user_id is not None:
        sums["day"] = Sum(_committed_cost(), filter=Q(created_by_id=user_id, created_at__gte=day_start))
    aggregates = Job.objects.filter(created_at__gte=month_start).aggregate(
        **{name: Coalesce(total, Value(ZERO), output_field=_MONEY) for name, total in sums.items()}
    )
    return Decimal(aggregates["month"]), Decimal(aggregates.get("day", ZERO))


def _policy(*, lock: bool) -> GenerationPolicy | None:
    queryset = GenerationPolicy.objects.all()
    if lock and transaction.get_connection().in_atomic_block:
        # Serializes concurrent checks of one organization until the job row commits.
        queryset = queryset.select_for_update()
    return queryset.first()


def budget_check(*, organization, user, estimated_cost: Decimal, now: datetime | None = None) -> None:
    """Refuse a new job whose estimate would take the organization over its monthly budget or the
    member over their daily budget. Call it in the transaction that creates the job: it then locks
    the policy row, so two concurrent jobs cannot both slip under the same limit.

    `user` may be None (a job started by an API key): only the monthly budget applies then."""
    estimated_cost = Decimal(str(estimated_cost))
    if estimated_cost < 0:
        raise ValueError("an estimated cost is never negative")
    with tenant_scope(organization):
        policy = _policy(lock=True)
        if policy is None or (policy.monthly_budget is None and policy.user_daily_budget is None):
            return
        if user is not None and not getattr(user, "is_authenticated", True):
            user = None
        month_spent, day_spent = _spent(user=user, now=now)
    if policy.monthly_budget is not None and month_spent + estimated_cost > policy.monthly_budget:
        raise BudgetExceeded(limit_name="monthly_budget", label="the organization's monthly budget",
                             limit=policy.monthly_budget, spent=month_spent, estimated_cost=estimated_cost)
    daily_budget = policy.user_daily_budget if user is not None else None
    if daily_budget is not None and day_spent + estimated_cost > daily_budget:
        raise BudgetExceeded(limit_name="user_daily_budget", label="the member's daily budget",
                             limit=daily_budget, spent=day_spent, estimated_cost=estimated_cost)


def spend_summary(*, organization, user=None, now: datetime | None = None) -> dict:
    """This month's spend against the budget, and (with `user`) today's spend against theirs.
    A budget and its remainder are None where there is no limit."""
    month_start, day_start = period_starts(now)
    with tenant_scope(organization):
        policy = _policy(lock=False)
        month_spent, day_spent = _spent(user=user, now=now)
    month_budget = policy.monthly_budget if policy else None
    daily_budget = policy.user_daily_budget if policy else None
    summary = {
        "month_start": month_start,
        "month_spent": month_spent,
        "month_budget": month_budget,
        "month_remaining": max(month_budget - month_spent, ZERO) if month_budget is not None else None,
        "user_daily_budget": daily_budget,
    }
    if user is not None:
        summary.update(
            day_start=day_start,
            day_spent=day_spent,
            day_remaining=max(daily_budget - day_spent, ZERO) if daily_budget is not None else None,
        )
    return summary
