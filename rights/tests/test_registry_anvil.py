"""The registry against a real EVM node: anvil, started by each test on a free loopback port.

Outages are real: the node is stopped (its state dumped with `--state`) and started again. Marked
`chain`; skipped only when the anvil binary is missing (`npm install -g @foundry-rs/anvil`), and CI
turns that skip into a failure.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter

import pytest
from django.db import connection
from web3 import Web3

from accounts.audit import Actor
from accounts.tenancy import dangerously_unscoped, tenant_scope
from rights import chain
from rights.models import Registration, RegistrationBatch, RegistrationStatus
from rights.models.registry import BatchStatus
from rights.registry import (
    proof_verify_onchain,
    registration_anchor_batch,
    registration_batches_send,
    registration_revoke,
    registrations_confirm,
)
from rights.tests.test_registry import make_contents, registrations

# anvil's first well-known development account: funded on every anvil chain, worthless elsewhere.
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_BIN = os.environ.get("ANVIL_BIN") or shutil.which("anvil")

if not ANVIL_BIN and os.environ.get("REQUIRE_CHAIN") == "1":  # CI: a missing node is a failure
    raise RuntimeError("REQUIRE_CHAIN=1 but no anvil binary: make install-anvil")

pytestmark = [
    pytest.mark.chain,
    pytest.mark.skipif(not ANVIL_BIN, reason="needs the anvil binary: npm install -g @foundry-rs/anvil"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Anvil:
    def __init__(self, state_file):
        self.port = _free_port()
        self.state_file = state_file
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, keep_state: bool = True) -> None:
        args = [ANVIL_BIN, "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if keep_state:
            args += ["--state", str(self.state_file), "--preserve-historical-states"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        w3 = Web3(Web3.HTTPProvider(self.url))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"anvil exited: {self.process.stderr.read().decode()}")
            try:
                w3.eth.block_number
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("anvil did not start in 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # anvil dumps --state on the way out
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def rpc(self, method: str, params: list | None = None):
        return Web3(Web3.HTTPProvider(self.url)).provider.make_request(method, params or [])


@pytest.fixture
def anvil(settings, tmp_path, monkeypatch):
    node = Anvil(tmp_path / "anvil-state.json")
    node.start()
    settings.CHAIN_RPC_URL = node.url
    settings.CHAIN_CONTRACT = ""
    settings.CHAIN_DIR = tmp_path / "chain"
    monkeypatch.setenv("CHAIN_SIGNER_KEY", ANVIL_KEY)
    chain.chain_client_reset()
    yield node
    node.stop()
    chain.chain_client_reset()


def anchored_roots_on_chain() -> Counter:
    events = chain.registry_contract().events.Anchored().get_logs(from_block=0)
    return Counter(Web3.to_hex(event.args.root) for event in events)


def assert_each_registration_confirmed_exactly_once():
    regs = registrations()
    assert regs and {r.status for r in regs} == {RegistrationStatus.CONFIRMED}
    on_chain = anchored_roots_on_chain()
    with dangerously_unscoped():
        batches = list(RegistrationBatch.objects.filter(kind="anchor", status=BatchStatus.CONFIRMED))
    assert all(on_chain[b.merkle_root] == 1 for b in batches)
    assert sum(b.size for b in batches) == len(regs)
    assert sorted(on_chain) == sorted(b.merkle_root for b in batches)  # nothing anchored twice or left over
    for registration in regs:
        assert registration.batch.status == BatchStatus.CONFIRMED
        assert proof_verify_onchain(registration)


def test_anchor_confirm_and_verify_on_anvil(anvil, tenant_a, tenant_b):
    make_contents(tenant_a, 60)
    make_contents(tenant_b, 40)
    batch = registration_anchor_batch(max_size=1000)
    assert batch.status == BatchStatus.SENT
    assert registrations_confirm() == 100
    assert_each_registration_confirmed_exactly_once()
    batch.refresh_from_db()
    assert batch.gas_used / batch.size < 1000
    assert chain.chain_status()["ok"]


def test_outage_before_confirming_then_node_restarts(anvil, tenant_a, tenant_b):
    make_contents(tenant_a, 5)
    make_contents(tenant_b, 5)
    batch = registration_anchor_batch()
    assert batch.status == BatchStatus.SENT
    anvil.stop()
    with pytest.raises(chain.ChainUnavailable):
        registrations_confirm()
    assert {r.status for r in registrations()} == {RegistrationStatus.PENDING}
    anvil.start()
    assert registrations_confirm() == 10
    assert_each_registration_confirmed_exactly_once()


def test_outage_while_sending_then_resent_with_the_same_nonce(anvil, tenant_a, monkeypatch):
    make_contents(tenant_a, 6)
    real_send = chain.transaction_send

    def node_dies_first(raw, **kwargs):
        anvil.stop()
        return real_send(raw, **kwargs)

    monkeypatch.setattr(chain, "transaction_send", node_dies_first)
    batch = registration_anchor_batch()
    monkeypatch.setattr(chain, "transaction_send", real_send)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.SIGNED and batch.error.startswith("chain_unavailable")
    make_contents(tenant_a, 3)  # arrive during the outage
    with pytest.raises(chain.ChainUnavailable):
        registrations_confirm()
    anvil.start()
    assert registration_batches_send() == 1
    registration_anchor_batch()
    registrations_confirm()
    assert_each_registration_confirmed_exactly_once()
    with dangerously_unscoped():
        nonces = list(RegistrationBatch.objects.values_list("nonce", flat=True))
    assert len(nonces) == len(set(nonces)) == 2


def test_sent_but_unmined_transaction_lost_by_the_node_is_sent_again(anvil, tenant_a):
    chain.registry_address()  # deploy while the node still mines on its own
    anvil.rpc("evm_setAutomine", [False])
    make_contents(tenant_a, 4)
    batch = registration_anchor_batch()
    assert batch.status == BatchStatus.SENT
    anvil.stop()  # its pool is not part of the dumped state: the transaction is gone
    anvil.start()
    assert registrations_confirm() == 0  # the node did not know it: sent again
    anvil.rpc("evm_mine")
    assert registrations_confirm() == 4
    assert_each_registration_confirmed_exactly_once()
    batch.refresh_from_db()
    assert batch.attempts == 2


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_share_a_nonce(anvil, tenant_a, tenant_b):
    make_contents(tenant_a, 120)
    make_contents(tenant_b, 80)
    chain.registry_address()
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker():
        try:
            start.wait()
            while registration_anchor_batch(max_size=17) is not None:
                pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    registrations_confirm()
    with dangerously_unscoped():
        nonces = list(RegistrationBatch.objects.values_list("nonce", flat=True))
        assert Registration.objects.filter(batch__isnull=True).count() == 0
    assert len(nonces) == len(set(nonces)) == 12  # ceil(200 / 17)
    assert_each_registration_confirmed_exactly_once()


def test_revocation_on_anvil(anvil, tenant_a):
    make_contents(tenant_a, 3)
    registration_anchor_batch()
    registrations_confirm()
    victim, *others = registrations()
    with tenant_scope(tenant_a.organization):
        registration_revoke(registration=victim, reason="rights returned", actor=Actor(user=tenant_a.owner))
    registrations_confirm()
    with dangerously_unscoped():
        victim.refresh_from_db()
    assert victim.revocation.status == BatchStatus.CONFIRMED
    assert not proof_verify_onchain(victim)
    assert all(proof_verify_onchain(r) for r in others)
    contract = chain.registry_contract()
    assert contract.functions.revoked(victim.leaf).call() == victim.revocation.block_number



def test_deploy_registry_command_then_chain_contract_is_used(anvil, settings, tenant_a):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("deploy_registry", stdout=out)
    address = out.getvalue().strip().splitlines()[-1].removeprefix("CHAIN_CONTRACT=")
    settings.CHAIN_CONTRACT = address
    settings.DEPLOYMENT = "production"  # never auto-deploys: must use the configured contract
    make_contents(tenant_a, 2)
    batch = registration_anchor_batch()
    registrations_confirm()
    assert batch.contract == Web3.to_checksum_address(address)
    assert all(proof_verify_onchain(r) for r in registrations())
