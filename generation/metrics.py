"""The pipeline's gauges, read from the database at each scrape (config.metrics): jobs per status, the
spend, and the steps queued per queue, over every organization."""
from __future__ import annotations

from django.db.models import Count, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from config.queues import QUEUES
from generation.models import Job, JobStatus, Step, StepStatus

DESCRIBE = (GaugeMetricFamily("platform_jobs", "", labels=["status"]),
            GaugeMetricFamily("platform_queue_depth", "", labels=["queue"]),
            CounterMetricFamily("platform_spend_usd", ""))


def pipeline_gauges() -> list:
    """Two aggregate queries; the caller holds the unscoped transaction."""
    by_status = list(Job.objects.order_by().values_list("status").annotate(n=Count("id"), cost=Sum("cost")))
    jobs = {status: n for status, n, _cost in by_status}
    spend = sum(cost or 0 for _status, _n, cost in by_status)
    queued = dict(Step.objects.filter(status=StepStatus.QUEUED).order_by().values_list("queue")
                  .annotate(n=Count("id")))
    family = GaugeMetricFamily("platform_jobs", "Jobs per status, all organizations.", labels=["status"])
    for status in JobStatus.values:
        family.add_metric([status], jobs.get(status, 0))
    depth = GaugeMetricFamily("platform_queue_depth", "Steps queued and not yet claimed, per queue.",
                              labels=["queue"])
    for queue in sorted(set(QUEUES) | set(queued)):
        depth.add_metric([queue or "none"], queued.get(queue, 0))
    return [family, depth,
            CounterMetricFamily("platform_spend_usd", "Sum of job costs in USD, all organizations.", value=float(spend))]
