"""Websocket clients for bench/load.py, in their own process: N asyncio connections to /ws/jobs/<id>.

Reads one JSON object on stdin: {"base": "ws://127.0.0.1:PORT", "origin": "...", "clients": [[job_id,
cookie], ...], "events_per_job": K, "connect_parallel": 100, "drain_s": 30}. Connects every client (at most
`connect_parallel` handshakes at a time), prints `{"ready": ...}` on stdout once all are connected or
failed, then counts the bench events each client receives (those carrying `bench_seq`); after a line on
stdin (the publisher is done) it waits until every client has its K or `drain_s` passes, and prints
`{"done": ...}`: expected and received counts, connect times and
delivery latencies (receive time minus the `sent` time the publisher put in the event; same machine clock).
"""
from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

from websockets.asyncio.client import connect


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Client:
    def __init__(self, job_id: str, cookie: str):
        self.job_id, self.cookie = job_id, cookie
        self.connect_ms: float | None = None
        self.error = ""
        self.seen: set[int] = set()
        self.latencies_ms: list[float] = []
        self.duplicates = 0
        self.closed_code: int | None = None


async def run_client(client: Client, config: dict, gate: asyncio.Semaphore, all_done: asyncio.Event,
                     progress: dict) -> None:
    expected = config["events_per_job"]
    url = f"{config['base']}/ws/jobs/{client.job_id}"
    try:
        async with gate:
            started = time.perf_counter()
            socket = await connect(url, origin=config["origin"], additional_headers={"Cookie": client.cookie},
                                   open_timeout=60, max_queue=None, ping_interval=None)
            first = json.loads(await asyncio.wait_for(socket.recv(), timeout=60))
            if first.get("type") != "snapshot":
                raise RuntimeError(f"first message was not the snapshot: {first!r:.200}")
            client.connect_ms = (time.perf_counter() - started) * 1000
    except Exception as exc:  # reported, counted; the run goes on
        client.error = f"{type(exc).__name__}: {exc}"[:300]
        progress["settled"] += 1
        return
    progress["settled"] += 1
    try:
        async for raw in socket:
            message = json.loads(raw)
            seq = message.get("bench_seq")
            if seq is None:
                continue
            if seq in client.seen:
                client.duplicates += 1
                continue
            client.seen.add(seq)
            client.latencies_ms.append((time.time() - message["sent"]) * 1000)
            if len(client.seen) == expected:
                progress["complete"] += 1
                if progress["complete"] == progress["clients"]:
                    all_done.set()
    except asyncio.CancelledError:
        pass
    except Exception as exc:
        client.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        client.closed_code = socket.close_code
        await socket.close()


async def main() -> None:
    config = json.loads(sys.stdin.readline())
    fd_limit = raise_fd_limit()
    clients = [Client(job_id, cookie) for job_id, cookie in config["clients"]]
    gate = asyncio.Semaphore(config.get("connect_parallel", 100))
    all_done = asyncio.Event()
    progress = {"settled": 0, "complete": 0, "clients": len(clients)}
    started = time.perf_counter()
    tasks = [asyncio.create_task(run_client(c, config, gate, all_done, progress)) for c in clients]
    while progress["settled"] < len(clients):
        await asyncio.sleep(0.05)
    connected = [c for c in clients if c.connect_ms is not None]
    print(json.dumps({"ready": len(connected), "failed": len(clients) - len(connected), "fd_limit": fd_limit,
                      "connect_all_s": round(time.perf_counter() - started, 2),
                      "errors": sorted({c.error for c in clients if c.error})[:5]}), flush=True)
    progress["clients"] = len(connected)
    if progress["complete"] >= len(connected) > 0:
        all_done.set()
    # The publisher says when it has sent every event; then the stragglers get `drain_s` to arrive.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if connected:
        try:
            await asyncio.wait_for(all_done.wait(), timeout=config.get("drain_s", 30))
        except asyncio.TimeoutError:
            pass
    finished = time.perf_counter()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"done": {
        "clients": len(clients),
        "connected": len(connected),
        "expected": len(connected) * config["events_per_job"],
        "received": sum(len(c.seen) for c in clients),
        "complete_clients": sum(1 for c in connected if len(c.seen) == config["events_per_job"]),
        "duplicates": sum(c.duplicates for c in clients),
        "connect_ms": [c.connect_ms for c in connected],
        "latency_ms": [value for c in clients for value in c.latencies_ms],
        "errors": sorted({c.error for c in clients if c.error})[:5],
        "wait_s": round(finished - started, 2),
    }}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
