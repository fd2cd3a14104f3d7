"""`manage.py sweep`: the scheduler process of a production deployment (docker/compose.yaml, platform/k8s).

Runs what every worker's Sweeper thread runs (generation.queue.worker.sweep: expired leases back to the
queue, lost wake-ups, due webhook deliveries, registration batches) in a loop of its own, so the
sweeping goes on while no worker is up. Several sweepers are harmless (each round is idempotent).
On SIGTERM or SIGINT it finishes the round in progress and exits 0.
"""
from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from generation.queue import worker

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Sweep every --interval seconds (default SWEEP_INTERVAL_S) until SIGTERM; --once sweeps once."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one round, then exit (non-zero if it failed)")
        parser.add_argument("--interval", type=float, default=None,
                            help="seconds between rounds (default: SWEEP_INTERVAL_S)")
        parser.add_argument("--heartbeat", default="",
                            help="file touched after every round, for a liveness check of its age")

    def handle(self, *args, once=False, interval=None, heartbeat="", **options):
        interval = settings.SWEEP_INTERVAL_S if interval is None else interval
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds")
        heartbeat_path = Path(heartbeat) if heartbeat else None
        if once:
            result = self.round(heartbeat_path)
            if result is None:
                raise CommandError("the sweep failed (see the log)")
            self.stdout.write(self.summary(result))
            return

        stopped = threading.Event()

        def stop(signum, frame):
            logger.info("sweep: %s received, stopping after the current round", signal.Signals(signum).name)
            stopped.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # Its sweeps call the chain (registration batches): its metrics, chain errors included, are
        # served on WORKER_METRICS_PORT like a worker's.
        from config.metrics import worker_metrics_serve

        worker_metrics_serve()
        self.stdout.write(f"sweeping every {interval:g}s (SIGTERM stops after the current round)")
        self.stdout.flush()
        rounds = 0
        while not stopped.is_set():
            result = self.round(heartbeat_path)
            close_old_connections()  # like the Sweeper thread: a fresh connection after a database outage
            rounds += 1
            if result and (result["requeued"] or result["deliveries"] or result["anchored"]):
                logger.info("sweep: %s", self.summary(result))
            stopped.wait(interval)
        self.stdout.write(f"stopped after {rounds} rounds")

    @staticmethod
    def round(heartbeat_path: Path | None) -> dict | None:
        """One sweep, as the workers' Sweeper thread does it: failures are logged, never fatal."""
        try:
            result = worker.sweep()
        except Exception:
            logger.exception("sweep failed")
            result = None
        if heartbeat_path is not None and result is not None:
            heartbeat_path.touch()
        return result

    @staticmethod
    def summary(result: dict) -> str:
        return (f"requeued {len(result['requeued'])} steps, sent {len(result['deliveries'])} webhook deliveries, "
                f"anchored {result['anchored']} registration batches")
