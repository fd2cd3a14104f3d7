"""A suspended organization: workers start none of its steps, which wait queued and run when it is
reinstated (its wake-ups are sent again on that commit); its members' job websockets close."""
import pytest
from asgiref.sync import async_to_sync
from celery.signals import task_postrun, task_prerun
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import Membership
from accounts.tests.test_websocket import closed_with, session_cookie
from config.asgi import application
from config.celery import app as celery_app
from config.tenancy import dangerously_unscoped, tenant_scope
from generation.models import Job, Step
from generation.queue import tasks
from generation.queue.worker import execute_next, run_until_idle
from generation.tests.test_pipeline import SMALL, drain, reload, start


def suspend(tenant, run_commits, suspended=True):
    run_commits(lambda: account_services.organization_set_suspended(
        organization=tenant.organization, suspended=suspended, actor=Actor.system(), reason="unpaid"))


def test_a_suspended_organizations_steps_wait_while_anothers_run(tenant_a, tenant_b, run_commits):
    paused = start(tenant_a, run_commits)
    other = start(tenant_b, run_commits, topic="Desert caravans crossing dunes under stars")
    suspend(tenant_a, run_commits)
    drain(run_commits)
    assert reload(tenant_b, other).status == "completed"
    paused = reload(tenant_a, paused)
    assert paused.status == "style_detection" and paused.progress == 0
    with dangerously_unscoped():
        steps = list(Step.objects.filter(job_id=paused.pk).values_list("stage", "status", "attempts"))
    assert ("style", "queued", 0) in steps and not any(status == "running" for _, status, _ in steps)
    assert execute_next("cpu") is None  # a claim passes the queued step over


def test_reinstating_wakes_the_waiting_steps_and_the_job_completes(tenant_a, run_commits, settings):
    job = start(tenant_a, run_commits, options={**SMALL, "shots": 2})
    suspend(tenant_a, run_commits)
    assert run_commits(run_until_idle) == 0
    # With a queue engine that runs what it is sent at once, the job completes from the reinstatement's
    # wake-ups alone: nobody drains the queue by hand here.
    settings.QUEUE_ENGINE = "celery"
    celery_app.conf.task_always_eager = True
    # Like Django's test client with request_started: the tasks' connection refresh would close the
    # test's own connection, which is inside the test transaction.
    task_prerun.disconnect(tasks._fresh_connections)
    task_postrun.disconnect(tasks._fresh_connections)
    try:
        suspend(tenant_a, run_commits, suspended=False)
    finally:
        celery_app.conf.task_always_eager = False
        task_prerun.connect(tasks._fresh_connections)
        task_postrun.connect(tasks._fresh_connections)
    job = reload(tenant_a, job)
    assert job.status == "completed", job.error


def _live_job(tenant, project):
    from generation import services

    with tenant_scope(tenant.organization):
        job, _ = services.job_create(organization=tenant.organization, actor=Actor(user=tenant.owner),
                                     project_id=project.pk, topic="Paper boats on a rainy canal",
                                     options=dict(SMALL))
    return job


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["remove", "suspend"])
def test_a_job_websocket_closes_when_its_session_ends(tenant_a, settings, ending):
    settings.JOB_EVENTS_POLL_S = 600  # only the session.ended message can close it in time
    member = tenant_a.member("viewer")
    cookie = session_cookie(member)
    project = tenant_a.project("Live")

    job = _live_job(tenant_a, project)

    def end():
        if ending == "remove":
            with tenant_scope(tenant_a.organization):
                account_services.membership_remove(membership=Membership.objects.get(user=member),
                                                   actor=Actor(user=tenant_a.owner))
        else:
            account_services.organization_set_suspended(organization=tenant_a.organization, suspended=True,
                                                        actor=Actor.system())

    async def scenario():
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
        ws = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}", headers=headers)
        assert (await ws.connect())[0]
        assert (await ws.receive_json_from())["type"] == "snapshot"
        await database_sync_to_async(end)()
        last, code = await closed_with(ws, timeout=3)
        assert code == 4403 and last["type"] == "session.ended"

    async_to_sync(scenario)()
    with dangerously_unscoped():
        assert Job.objects.filter(pk=job.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_websocket_notices_a_suspension_no_message_announced(tenant_a, settings):
    """A suspension made where no channel layer reaches this process: the socket's re-check closes it."""
    settings.JOB_EVENTS_POLL_S = 0.3
    cookie = session_cookie(tenant_a.member("viewer"))
    project = tenant_a.project("Live")
    from accounts.models import Organization

    job = _live_job(tenant_a, project)

    def suspend_quietly():
        Organization.objects.filter(pk=tenant_a.organization.pk).update(is_suspended=True)

    async def scenario():
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
        ws = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}", headers=headers)
        assert (await ws.connect())[0]
        await ws.receive_json_from()
        await database_sync_to_async(suspend_quietly)()
        last, code = await closed_with(ws, timeout=3)
        assert code == 4403 and last == {"type": "session.ended", "reason": "organization_suspended"}

    async_to_sync(scenario)()
