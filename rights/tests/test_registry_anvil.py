"""The registry against a real EVM node: anvil, started by each test on a free loopback port.

Outages are real: the node is stopped (its state dumped with `--state`) and started again. So are
resets (started again without its state, or evm_revert) and stuck transactions (held in its pool by
evm_setAutomine false, or priced under a raised base fee). Marked
`chain`; skipped only when the anvil binary is missing (`make install-anvil`, from npm), and CI
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
from config.tenancy import dangerously_unscoped, tenant_scope
from rights import chain, registry
from rights.models import ChainState, Registration, RegistrationBatch, RegistrationStatus
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
    pytest.mark.skipif(not ANVIL_BIN, reason="needs the anvil binary: make install-anvil (npm)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Anvil:
    def __init__(self, state_file, *, chain_id: int | None = None):
        self.port = _free_port()
        self.state_file = state_file
        self.chain_id = chain_id
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, keep_state: bool = True) -> None:
        args = [ANVIL_BIN, "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if self.chain_id is not None:
            args += ["--chain-id", str(self.chain_id)]
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

    def restart_without_state(self) -> None:
        """A development chain reset: the same node, port and chain id, a new genesis, nothing else."""
        self.stop()
        time.sleep(1.1)  # anvil's genesis carries the start time in seconds
        self.start(keep_state=False)

    def rpc(self, method: str, params: list | None = None):
        response = Web3(Web3.HTTPProvider(self.url)).provider.make_request(method, params or [])
        assert "error" not in response, response
        return response.get("result")


@pytest.fixture
def anvil(request, settings, tmp_path, monkeypatch):
    node = Anvil(tmp_path / "anvil-state.json", chain_id=getattr(request, "param", None))
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
    assert registry.chain_status()["ok"]


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


def anchored_while_the_node_dies(anvil, monkeypatch):
    """registration_anchor_batch(), with the node stopping just before the batch's transaction is sent."""
    real_send = chain.transaction_send

    def node_dies_first(raw, **kwargs):
        anvil.stop()
        return real_send(raw, **kwargs)

    monkeypatch.setattr(chain, "transaction_send", node_dies_first)
    batch = registration_anchor_batch()
    monkeypatch.setattr(chain, "transaction_send", real_send)
    return batch


def test_outage_while_sending_then_resent_with_the_same_nonce(anvil, tenant_a, monkeypatch):
    make_contents(tenant_a, 6)
    batch = anchored_while_the_node_dies(anvil, monkeypatch)
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


# --- A chain reset under the same chain id ---------------------------------------------------

PRODUCTION_CHAIN_ID = 4242  # any chain id that is not a development one


def chain_state() -> ChainState:
    return ChainState.objects.get(chain_id=chain.chain_client().eth.chain_id)


def anchor_everything() -> None:
    """What the worker's batcher does each sweep."""
    while registration_anchor_batch(max_size=4) is not None:
        pass
    registrations_confirm()


def test_anvil_restarted_without_its_state_is_recovered_and_reanchored_once(anvil, tenant_a, tenant_b,
                                                                             monkeypatch):
    make_contents(tenant_a, 5)
    make_contents(tenant_b, 3)
    anchor_everything()
    assert {r.status for r in registrations()} == {RegistrationStatus.CONFIRMED}
    old_genesis, old_contract = chain_state().genesis_hash, chain.registry_address()
    # One more batch is signed but never sent: the node goes down first...
    make_contents(tenant_b, 2)
    signed = anchored_while_the_node_dies(anvil, monkeypatch)
    assert RegistrationBatch.objects.get(pk=signed.pk).status == BatchStatus.SIGNED
    # ...and comes back as a new chain with the same id: the contract and every anchor are gone.
    anvil.restart_without_state()
    status = registry.chain_status()
    assert status["chain_id"] == 31337 and status["development"]
    assert status["genesis"] != old_genesis and status["problem"].startswith("chain_replaced")
    assert not status["ok"]

    assert registrations_confirm() == 0  # recovers before it sends anything of the old chain
    state = chain_state()
    assert state.epoch == 1 and state.genesis_hash == status["genesis"]
    assert state.last_reset["previous_genesis"] == old_genesis and state.last_reset["batches_lost"] == 3
    assert state.last_reset["registrations_requeued"] == 10 and state.last_reset["nonce"] == 1
    assert state.last_reset["registry_redeployed"]  # the deployment is the new chain's nonce 0
    assert set(RegistrationBatch.objects.values_list("status", flat=True)) == {BatchStatus.LOST}
    assert {(r.status, r.batch_id) for r in registrations()} == {(RegistrationStatus.PENDING, None)}
    assert chain.chain_client().eth.get_transaction_count(chain.chain_signer().address) == 1

    anchor_everything()
    assert_each_registration_confirmed_exactly_once()  # the new chain's logs, from block 0
    new_batches = RegistrationBatch.objects.filter(chain_epoch=1)
    assert sorted(new_batches.values_list("nonce", flat=True)) == [1, 2, 3]
    assert {b.contract for b in new_batches} == {chain.registry_address()} and old_contract  # same signer, nonce 0
    status = registry.chain_status()
    assert status["ok"] and "problem" not in status and status["last_reset"]["batches_lost"] == 3


def test_a_configured_contract_gone_with_the_reset_gets_a_replacement(anvil, settings, tenant_a):
    from io import StringIO

    from django.core.management import call_command

    w3 = chain.chain_client()
    signer = chain.chain_signer().address
    w3.eth.send_transaction({"from": signer, "to": signer, "value": 0})  # the old chain's deployment is nonce 1
    out = StringIO()
    call_command("deploy_registry", stdout=out)
    configured = out.getvalue().strip().splitlines()[-1].removeprefix("CHAIN_CONTRACT=")
    settings.CHAIN_CONTRACT = configured
    make_contents(tenant_a, 3)
    anchor_everything()

    anvil.restart_without_state()
    with pytest.raises(chain.RegistryMissing):
        chain.registry_address()  # never anchors into an empty address
    registrations_confirm()
    replacement = chain_state().last_reset["registry_redeployed"]
    assert replacement and replacement != Web3.to_checksum_address(configured)
    assert chain.registry_address() == replacement and w3.eth.get_code(replacement)
    anchor_everything()
    assert_each_registration_confirmed_exactly_once()
    out = StringIO()
    call_command("deploy_registry", "--check", stdout=out)
    assert f"CHAIN_CONTRACT={replacement}" in out.getvalue()


@pytest.mark.parametrize("anvil", [PRODUCTION_CHAIN_ID], indirect=True)
def test_a_reset_of_a_production_chain_id_is_reported_never_reanchored(anvil, settings, tenant_a):
    make_contents(tenant_a, 3)
    anchor_everything()
    before = {(r.pk, r.status, r.tx_hash, r.batch_id) for r in registrations()}

    anvil.restart_without_state()
    make_contents(tenant_a, 1)
    with pytest.raises(chain.ChainReplaced):
        registrations_confirm()
    with pytest.raises(chain.ChainReplaced):
        registration_anchor_batch()
    status = registry.chain_status()
    assert not status["ok"] and not status["development"]
    assert status["problem"].startswith("chain_replaced") and "operator" in status["problem"]
    assert status["error"].startswith("registry_missing")  # and no new contract deployed by itself
    assert {(r.pk, r.status, r.tx_hash, r.batch_id) for r in registrations()} >= before
    assert chain_state().epoch == 0
    assert chain.chain_client().eth.get_transaction_count(chain.chain_signer().address) == 0  # nothing sent

    # An operator who knows the chain was re-created on purpose lists it as a development chain.
    settings.CHAIN_DEV_CHAIN_IDS = f"31337,{PRODUCTION_CHAIN_ID}"
    anchor_everything()
    assert_each_registration_confirmed_exactly_once()
    assert chain_state().epoch == 1


@pytest.mark.parametrize(("anvil", "recovered"), [(None, True), (PRODUCTION_CHAIN_ID, False)], indirect=["anvil"])
def test_anchors_gone_with_the_same_genesis(anvil, tenant_a, recovered):
    """evm_revert: the same genesis, the contract still there, the anchors gone. On a development
    chain that is a reset; on another chain a reorg deeper than the confirmations, only reported."""
    chain.registry_address()
    snapshot = anvil.rpc("evm_snapshot")
    make_contents(tenant_a, 3)
    anchor_everything()
    anvil.rpc("evm_revert", [snapshot])

    status = registry.chain_status()
    assert status["problem"].startswith("anchors_missing") and not status["ok"]
    registrations_confirm()
    if recovered:
        assert chain_state().epoch == 1 and chain_state().last_reset["registry_redeployed"] is None
        anchor_everything()
        assert_each_registration_confirmed_exactly_once()
        assert registry.chain_status()["ok"]
    else:
        assert chain_state().epoch == 0
        assert {r.status for r in registrations()} == {RegistrationStatus.CONFIRMED}
        assert not any(proof_verify_onchain(r) for r in registrations())
        assert RegistrationBatch.objects.get().status == BatchStatus.CONFIRMED
        assert registry.chain_status()["problem"].startswith("anchors_missing")


# --- Stuck transactions: replaced with the same nonce and higher fees ------------------------


def pool_hashes(anvil) -> set[str]:
    pending = anvil.rpc("txpool_content")["pending"]
    return {tx["hash"] for by_nonce in pending.values() for tx in by_nonce.values()}


def test_a_stuck_transaction_is_replaced_with_higher_fees_and_mined_once(anvil, settings, tenant_a, tenant_b):
    chain.registry_address()
    anvil.rpc("evm_setAutomine", [False])  # a transaction now waits in the pool until evm_mine
    make_contents(tenant_a, 3)
    make_contents(tenant_b, 2)
    batch = registration_anchor_batch()
    first = batch.tx_hash
    settings.CHAIN_FEE_BUMP_AFTER_S = 600
    assert registrations_confirm() == 0
    batch.refresh_from_db()
    assert batch.tx_hash == first and len(batch.transactions) == 1  # not stuck long enough yet

    settings.CHAIN_FEE_BUMP_AFTER_S = 0
    registrations_confirm()
    registrations_confirm()  # two replacements: three transactions for one nonce
    batch.refresh_from_db()
    hashes = [entry["hash"] for entry in batch.transactions]
    assert len(hashes) == len(set(hashes)) == 3 and hashes[0] == first and batch.tx_hash == hashes[-1]
    for older, newer in zip(batch.transactions, batch.transactions[1:]):
        for name in ("maxFeePerGas", "maxPriorityFeePerGas"):
            assert newer["fees"][name] * 1000 >= older["fees"][name] * 1125
    assert pool_hashes(anvil) == {hashes[-1]}  # the node took each replacement
    assert {chain.transaction_decode(e["raw"])["nonce"] for e in batch.transactions} == {batch.nonce}

    anvil.rpc("evm_mine")
    assert registrations_confirm() == 5
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CONFIRMED and batch.tx_hash == hashes[-1]
    assert {r.tx_hash for r in registrations()} == {hashes[-1]}
    assert RegistrationBatch.objects.count() == 1
    assert_each_registration_confirmed_exactly_once()


def test_the_original_mined_before_its_replacement_settles_the_batch(anvil, settings, tenant_a, monkeypatch):
    chain.registry_address()
    anvil.rpc("evm_setAutomine", [False])
    make_contents(tenant_a, 4)
    batch = registration_anchor_batch()
    first = batch.tx_hash
    real_send = chain.transaction_send

    def original_mined_meanwhile(raw, **kwargs):
        anvil.rpc("evm_mine")  # a block takes the original while the replacement is on its way
        return real_send(raw, **kwargs)  # the node answers "nonce too low"

    monkeypatch.setattr(chain, "transaction_send", original_mined_meanwhile)
    settings.CHAIN_FEE_BUMP_AFTER_S = 0
    registrations_confirm()
    monkeypatch.setattr(chain, "transaction_send", real_send)
    batch.refresh_from_db()
    assert len(batch.transactions) == 2 and batch.status == BatchStatus.SENT  # not given up: one of them is mined
    assert registrations_confirm() == 4
    batch.refresh_from_db()
    assert batch.status == BatchStatus.CONFIRMED and batch.tx_hash == first
    assert_each_registration_confirmed_exactly_once()


def test_only_the_next_nonce_is_replaced_and_replacements_stop_compounding(anvil, settings, tenant_a):
    chain.registry_address()
    anvil.rpc("evm_setAutomine", [False])
    make_contents(tenant_a, 2)
    first = registration_anchor_batch()
    make_contents(tenant_a, 2)
    second = registration_anchor_batch()
    settings.CHAIN_FEE_BUMP_AFTER_S = 0
    settings.CHAIN_FEE_BUMPS_MAX = 2
    for _ in range(4):
        registrations_confirm()
    first.refresh_from_db()
    second.refresh_from_db()
    assert len(first.transactions) == 3  # two replacements, then none: it pays more than the market asks
    assert len(second.transactions) == 1  # it waits behind the first: higher fees would not move it
    assert pool_hashes(anvil) == {first.tx_hash, second.tx_hash}
    anvil.rpc("evm_mine")
    assert registrations_confirm() == 4
    assert_each_registration_confirmed_exactly_once()


def test_the_fee_cap_stops_replacements(anvil, settings, tenant_a):
    chain.registry_address()
    anvil.rpc("evm_setAutomine", [False])
    make_contents(tenant_a, 2)
    batch = registration_anchor_batch()
    settings.CHAIN_FEE_BUMP_AFTER_S = 0
    settings.CHAIN_MAX_FEE_PER_GAS_WEI = batch.transactions[0]["fees"]["maxFeePerGas"]
    registrations_confirm()
    batch.refresh_from_db()
    assert len(batch.transactions) == 1 and "CHAIN_MAX_FEE_PER_GAS_WEI" in batch.error
    anvil.rpc("evm_mine")
    assert registrations_confirm() == 2
    assert_each_registration_confirmed_exactly_once()


def test_a_transaction_refused_for_its_fees_after_an_outage_is_signed_again(anvil, tenant_a, monkeypatch):
    chain.registry_address()
    make_contents(tenant_a, 3)
    batch = anchored_while_the_node_dies(anvil, monkeypatch)
    anvil.start()
    base = chain.chain_client().eth.get_block("latest")["baseFeePerGas"]
    anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(100 * base)])
    anvil.rpc("evm_mine")  # the base fee is now far above what the held transaction offers
    with pytest.raises(chain.TransactionRejected, match="base fee"):
        chain.transaction_send(batch.raw_tx)

    assert registrations_confirm() == 3
    batch.refresh_from_db()
    assert len(batch.transactions) == 2 and batch.tx_hash == batch.transactions[1]["hash"]
    assert batch.transactions[1]["fees"]["maxFeePerGas"] >= 100 * base
    assert_each_registration_confirmed_exactly_once()
