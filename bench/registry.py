"""Gas per registration: single `register(leaf)` transactions against Merkle batches of 1, 100 and 1000
anchored through the real outbox, every proof checked against the contract.

    .venv/bin/python bench/registry.py [--singles 20] [--embedded]

Runs in a fresh temporary VAR_DIR with SQLite, against a throwaway anvil on a free loopback port when
the binary is on PATH (or ANVIL_BIN), else the embedded in-process EVM. Target: < 1,000 gas per
registration in batches of 100 or more (gas per registration = transaction gas / batch size).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="bench-registry-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "CHAIN_RPC_URL", "CHAIN_CONTRACT"):
    os.environ.pop(name, None)

ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's dev account 0
BATCH_SIZES = (1, 100, 1000)


def start_anvil(binary: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--silent"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(url))
    for _ in range(600):
        try:
            w3.eth.block_number
            return process, url
        except Exception:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("anvil did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--singles", type=int, default=20)
    parser.add_argument("--embedded", action="store_true", help="use the in-process EVM even if anvil is there")
    options = parser.parse_args()

    anvil_bin = None if options.embedded else (os.environ.get("ANVIL_BIN") or shutil.which("anvil"))
    anvil = None
    if anvil_bin:
        anvil, url = start_anvil(anvil_bin)
        os.environ["CHAIN_RPC_URL"] = url
        os.environ["CHAIN_SIGNER_KEY"] = ANVIL_KEY
    try:
        run(options, mode=f"anvil ({anvil_bin})" if anvil_bin else "embedded py-evm")
    finally:
        if anvil:
            anvil.terminate()
            anvil.wait()


def run(options, *, mode: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from accounts import services
    from accounts.models import User
    from rights import chain
    from rights.registry import proof_verify_onchain, registration_anchor_batch, registrations_confirm
    from rights.tests.test_registry import make_contents, registrations
    from rights.models.registry import BatchStatus

    class Tenant:  # what make_contents needs
        def __init__(self, slug):
            owner = User.objects.create_user(email=f"owner@{slug}.bench", password=None)
            self.organization = services.organization_create(name=slug, slug=slug, owner=owner)

    tenants = [Tenant("bench-a"), Tenant("bench-b")]
    w3 = chain.chain_client()
    contract = chain.registry_contract()
    signer = chain.chain_signer()

    # Singles: one register(leaf) transaction per registration, outside the outbox.
    single_gas = []
    for index in range(options.singles):
        leaf = w3.keccak(text=f"single-{index}")
        raw, tx_hash = chain.transaction_sign(function="register", args=[leaf],
                                              nonce=w3.eth.get_transaction_count(signer.address, "pending"))
        chain.transaction_send(raw)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.05)
        assert receipt["status"] == 1 and contract.functions.verify(leaf, []).call()
        single_gas.append(receipt["gasUsed"])
    single = sum(single_gas) / len(single_gas)

    rows = [("single register()", options.singles, f"{single:,.0f}", f"{single:,.0f}", "yes", "1.0x")]
    batched = {}
    seen = 0
    for size in BATCH_SIZES:
        for tenant_index, tenant in enumerate(tenants):
            make_contents(tenant, size // 2 + (size % 2 if tenant_index == 0 else 0))
        started = time.perf_counter()
        batch = registration_anchor_batch(max_size=size)
        registrations_confirm()
        anchor_s = time.perf_counter() - started
        batch.refresh_from_db()
        assert batch.status == BatchStatus.CONFIRMED and batch.size == size
        members = [r for r in registrations() if r.batch_id == batch.pk]
        started = time.perf_counter()
        verified = all(proof_verify_onchain(r) for r in members)
        verify_ms = (time.perf_counter() - started) * 1000 / len(members)
        seen += len(members)
        per = batch.gas_used / batch.size
        batched[size] = per
        rows.append((f"batch of {size}", size, f"{batch.gas_used:,}", f"{per:,.1f}",
                     f"{'yes' if verified else 'NO'} ({verify_ms:.1f} ms each)", f"{single / per:,.1f}x"))
        print(f"  batch {size}: anchored+confirmed in {anchor_s:.2f} s", file=sys.stderr)

    print(f"Registry gas, {mode}; chain id {w3.eth.chain_id}; {platform.platform()}; python {platform.python_version()}")
    print(f"contract {contract.address}, compiler {chain.registry_artifact()['compiler']}")
    header = ("what", "registrations", "tx gas", "gas / registration", "proofs verified on chain", "single / this")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
    target = all(batched[size] < 1000 for size in BATCH_SIZES if size >= 100)
    print(f"target < 1,000 gas per registration at >= 100: {'met' if target else 'MISSED'}")
    if not target:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
