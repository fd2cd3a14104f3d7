"""`make run`: the web server and a worker for every queue, supervised together in one terminal.

In production run them as separate processes (see README, Processes).
"""
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from config.client_address import UVICORN_ARGS
from config.queues import QUEUES, dramatiq_queue

ALL_QUEUES = ",".join(QUEUES)


def worker_command(queues: str, concurrency: int) -> list[str]:
    if settings.QUEUE_ENGINE == "dramatiq":
        return [sys.executable, "-m", "dramatiq", "generation.queue.dramatiq_actors", "--queues",
                *(dramatiq_queue(queue) for queue in queues.split(",")),
                "--processes", "1", "--threads", str(concurrency)]
    return [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "-P", "threads", "-c",
            str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]


def web_command(host: str, port: int) -> list[str]:
    # UVICORN_ARGS: uvicorn leaves X-Forwarded-For alone; TRUSTED_PROXY_COUNT decides (config/client_address.py).
    return [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port),
            "--no-server-header", *UVICORN_ARGS]


class Command(BaseCommand):
    help = "Serve HTTP and websockets with uvicorn and run a worker for every queue."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "2")))
        parser.add_argument("--queues", default=ALL_QUEUES)

    def handle(self, *args, host, port, concurrency, queues, **options):
        web = web_command(host, port)
        processes = {"web": subprocess.Popen(web), "worker": subprocess.Popen(worker_command(queues, concurrency))}
        self.stdout.write(f"web pid {processes['web'].pid} on http://{host}:{port}; "
                          f"worker pid {processes['worker'].pid} on queues {queues} ({settings.QUEUE_ENGINE})")

        def stop(*_):
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while all(process.poll() is None for process in processes.values()):
                time.sleep(0.5)
        finally:
            stop()
            deadline = time.monotonic() + 30
            for process in processes.values():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
        failed = [name for name, process in processes.items() if process.returncode not in (0, -15, None)]
        if failed:
            self.stderr.write(f"stopped: {', '.join(failed)} exited with an error")
            sys.exit(1)
