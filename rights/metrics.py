"""The registry's gauge, read from the database at each scrape (config.metrics): registrations not yet
confirmed on chain, over every organization."""
from __future__ import annotations

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from rights.models import Registration, RegistrationStatus

BACKLOG_STATUSES = (RegistrationStatus.PENDING, RegistrationStatus.ANCHORED)
DESCRIBE = (GaugeMetricFamily("platform_registration_backlog", "", labels=["status"]),)


def registry_gauges() -> list:
    """One aggregate query; the caller holds the unscoped transaction."""
    backlog = dict(Registration.objects.filter(status__in=BACKLOG_STATUSES).order_by()
                   .values_list("status").annotate(n=Count("id")))
    family = GaugeMetricFamily("platform_registration_backlog", "Registrations not yet confirmed on chain.",
                               labels=["status"])
    for status in BACKLOG_STATUSES:
        family.add_metric([status], backlog.get(status, 0))
    return [family]
