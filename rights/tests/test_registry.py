"""The registry: the contract matches its source, Merkle proofs, and the outbox against the embedded
in-process EVM, whose state must survive a restart (of the client, and of the process)."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from web3 import Web3

from accounts.audit import Actor
from config.tenancy import dangerously_unscoped, tenant_scope
from rights import chain, registry
from rights.models import ChainState, Content, Registration, RegistrationBatch, RegistrationStatus
from rights.models.registry import BatchStatus
from rights.registry import (
    merkle_root_from_proof,
    merkle_tree,
    proof_verify_onchain,
    registration_anchor_batch,
    registration_enqueue,
    registration_leaf,
    registration_revoke,
    registration_status,
    registrations_confirm,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def embedded_chain(settings, tmp_path):
    settings.CHAIN_RPC_URL = ""
    settings.CHAIN_CONTRACT = ""
    settings.CHAIN_DIR = tmp_path / "chain"
    chain.chain_client_reset()
    yield settings.CHAIN_DIR
    chain.chain_client_reset()


def make_contents(tenant, count: int) -> list[Content]:
    contents = []
    with tenant_scope(tenant.organization):
        for _ in range(count):
            content = Content.objects.create(
                content_id=secrets.token_hex(6), kind="video", source="generated",
                sha256=hashlib.sha256(secrets.token_bytes(16)).hexdigest())
            registration_enqueue(content=content)
            contents.append(content)
    return contents


def registrations() -> list[Registration]:
    with dangerously_unscoped():
        return list(Registration.objects.select_related("batch").order_by("created_at"))


# --- The contract ----------------------------------------------------------------------------


def test_artifact_matches_source_compiled_with_pinned_vyper():
    artifact = chain.registry_artifact()
    rebuilt = chain.registry_artifact_compile()
    assert artifact["compiler"].startswith(f"vyper {chain.VYPER_VERSION}+")
    assert rebuilt["bytecode"] == artifact["bytecode"]
    assert rebuilt["bytecode_runtime"] == artifact["bytecode_runtime"]
    assert rebuilt["abi"] == artifact["abi"]
    assert rebuilt == artifact


# --- Merkle trees ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 100, 1000])
def test_every_proof_leads_to_the_root(size):
    leaves = [Web3.to_hex(Web3.keccak(i.to_bytes(4, "big"))) for i in range(size)]
    root, proofs = merkle_tree(leaves)
    assert set(proofs) == set(leaves)
    for leaf in leaves:
        assert merkle_root_from_proof(leaf=leaf, proof=proofs[leaf]) == root
        assert len(proofs[leaf]) <= (size - 1).bit_length()
    assert merkle_tree(list(reversed(leaves)))[0] == root  # independent of the query order
    if size == 1:
        assert root == leaves[0]


def test_a_wrong_leaf_or_proof_does_not_lead_to_the_root():
    leaves = [Web3.to_hex(Web3.keccak(text=str(i))) for i in range(5)]
    root, proofs = merkle_tree(leaves)
    stranger = Web3.to_hex(Web3.keccak(text="stranger"))
    assert merkle_root_from_proof(leaf=stranger, proof=proofs[leaves[0]]) != root
    assert merkle_root_from_proof(leaf=leaves[0], proof=proofs[leaves[1]]) != root


def test_leaf_binds_content_file_and_owner():
    base = dict(content_id="abc123", sha256="00" * 32, organization_public_id="studio-a")
    leaf = registration_leaf(**base)
    assert leaf.startswith("0x") and len(leaf) == 66
    assert registration_leaf(**base) == leaf
    for changed in ({"content_id": "abc124"}, {"sha256": "01" * 32}, {"organization_public_id": "studio-b"}):
        assert registration_leaf(**{**base, **changed}) != leaf


# --- The outbox on the embedded chain --------------------------------------------------------


def test_batch_anchors_both_tenants_with_verifiable_proofs(embedded_chain, tenant_a, tenant_b,
                                                           django_assert_max_num_queries):
    make_contents(tenant_a, 3)
    make_contents(tenant_b, 2)
    with django_assert_max_num_queries(14):  # the first batch also creates the ChainState row
        batch = registration_anchor_batch(max_size=1000)
    assert batch.status == BatchStatus.SENT and batch.size == 5
    assert registrations_confirm(confirmations=1) == 5
    for registration in registrations():
        assert registration.status == RegistrationStatus.CONFIRMED
        assert registration.batch_id == batch.pk and registration.block_number
        assert proof_verify_onchain(registration)
    assert registration_anchor_batch() is None  # nothing pending any more
    with tenant_scope(tenant_a.organization):
        assert {registration_status(content=c) for c in Content.objects.all()} == {"confirmed"}
    contract = chain.registry_contract()
    block, timestamp = contract.functions.anchored_at(batch.merkle_root).call()
    assert block == RegistrationBatch.objects.get().block_number and timestamp > 0


def test_anchor_query_count_does_not_grow_with_batch_size(embedded_chain, tenant_a, tenant_b,
                                                         django_assert_num_queries, django_assert_max_num_queries):
    make_contents(tenant_a, 1)
    registration_anchor_batch()
    # 11 queries (one of them: is the newest mined batch still on the chain?), plus one per chunk of
    # bulk_update where SQLite's parameter limit splits it
    for size, assert_queries in ((3, django_assert_num_queries(11)), (300, django_assert_max_num_queries(13))):
        make_contents(tenant_a, size // 3)
        make_contents(tenant_b, size - size // 3)
        with assert_queries:
            batch = registration_anchor_batch(max_size=1000)
        assert batch.size == size


def test_confirmations_move_anchored_to_confirmed(embedded_chain, tenant_a):
    make_contents(tenant_a, 2)
    registration_anchor_batch()
    assert registrations_confirm(confirmations=3) == 0
    assert {r.status for r in registrations()} == {RegistrationStatus.ANCHORED}
    chain.chain_client().provider.ethereum_tester.mine_blocks(2)
    assert registrations_confirm(confirmations=3) == 2
    assert {(r.status, r.confirmations) for r in registrations()} == {(RegistrationStatus.CONFIRMED, 3)}


def test_revocation_is_recorded_and_checked_on_chain(embedded_chain, tenant_a, tenant_b):
    make_contents(tenant_a, 2)
    make_contents(tenant_b, 1)
    registration_anchor_batch()
    registrations_confirm()
    victim, kept = [r for r in registrations() if r.organization_id == tenant_a.organization.pk]
    with tenant_scope(tenant_a.organization):
        registration_revoke(registration=victim, reason="licence ended", actor=Actor(user=tenant_a.owner))
    registrations_confirm()
    by_id = {r.pk: r for r in registrations()}
    assert by_id[victim.pk].status == RegistrationStatus.REVOKED
    assert by_id[victim.pk].revocation.status == BatchStatus.CONFIRMED
    assert not proof_verify_onchain(by_id[victim.pk])
    assert proof_verify_onchain(by_id[kept.pk])  # the rest of its batch is untouched
    events = chain.registry_contract().events.Revoked().get_logs(from_block=0)
    assert [(Web3.to_hex(e.args.leaf_or_root), e.args.reason) for e in events] == [(victim.leaf, "licence ended")]


def test_revoking_a_pending_registration_keeps_it_off_chain(embedded_chain, tenant_a):
    (content,) = make_contents(tenant_a, 1)
    with tenant_scope(tenant_a.organization):
        registration_revoke(registration=content.registration, reason="mistake", actor=Actor.system())
    assert registration_anchor_batch() is None
    assert RegistrationBatch.objects.count() == 0


def test_only_the_owner_writes_and_ownership_transfers(embedded_chain):
    w3 = chain.chain_client()
    contract = chain.registry_contract()
    owner = chain.chain_signer().address
    stranger = w3.eth.accounts[0]
    assert contract.functions.owner().call() == owner
    root = Web3.keccak(text="root")
    with pytest.raises(Exception, match="not owner"):
        contract.functions.anchor(root, 1).call({"from": stranger})
    contract.functions.anchor(root, 1).call({"from": owner})  # would succeed
    raw, _ = chain.transaction_sign(function="transfer_ownership", args=[stranger], nonce=w3.eth.get_transaction_count(owner))
    chain.transaction_send(raw)
    assert contract.functions.owner().call() == stranger
    with pytest.raises(Exception, match="not owner"):
        contract.functions.anchor(root, 1).call({"from": owner})


def test_gas_per_registration_in_a_batch_of_100_is_under_1000(embedded_chain, tenant_a):
    make_contents(tenant_a, 100)
    batch = registration_anchor_batch()
    registrations_confirm()
    batch.refresh_from_db()
    assert batch.gas_used / batch.size < 1000


def test_signer_key_is_generated_once_with_mode_0600(embedded_chain):
    first = chain.chain_signer()
    key_file = embedded_chain / "signer.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert chain.chain_signer().address == first.address


def test_chain_status_reports_the_embedded_chain(embedded_chain, db):
    status = registry.chain_status()
    assert status["ok"] and status["mode"] == "embedded" and status["contract_ok"]
    assert status["signer"] == chain.chain_signer().address
    assert status["development"] and status["genesis"].startswith("0x") and "problem" not in status


# --- Persistence of the embedded chain -------------------------------------------------------


def test_embedded_state_survives_a_client_restart(embedded_chain, tenant_a):
    make_contents(tenant_a, 4)
    batch = registration_anchor_batch()
    registrations_confirm()
    before = chain.chain_client()
    head = before.eth.block_number
    anchored = chain.registry_contract().functions.anchored_at(batch.merkle_root).call()
    address = chain.registry_address()

    chain.chain_client_reset()
    after = chain.chain_client()
    assert after is not before and after.provider.replayed == head
    assert after.eth.block_number == head
    assert chain.registry_address() == address
    assert chain.registry_contract().functions.anchored_at(batch.merkle_root).call() == anchored
    assert all(proof_verify_onchain(r) for r in registrations())
    # and it goes on: the next batch gets the next nonce and lands
    make_contents(tenant_a, 2)
    registration_anchor_batch()
    assert registrations_confirm() == 2


def test_embedded_state_survives_a_new_process(embedded_chain, tenant_a):
    make_contents(tenant_a, 3)
    batch = registration_anchor_batch()
    registrations_confirm()
    registration = registrations()[0]
    script = f"""
import django, json
django.setup()
from django.conf import settings
settings.CHAIN_DIR = {str(embedded_chain)!r}
settings.CHAIN_RPC_URL = ""
from rights import chain, registry
contract = chain.registry_contract()
print(json.dumps({{"verify": contract.functions.verify({registration.leaf!r}, {registration.proof!r}).call(),
                  "anchored_at": contract.functions.anchored_at({batch.merkle_root!r}).call(),
                  "address": contract.address}}))
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["verify"] is True
    assert result["address"] == chain.registry_address()
    assert result["anchored_at"] == chain.registry_contract().functions.anchored_at(batch.merkle_root).call()


# --- Outages ---------------------------------------------------------------------------------


def test_an_unreachable_node_loses_nothing(settings, tmp_path, monkeypatch, tenant_a):
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"  # discard port: connection refused
    settings.CHAIN_CONTRACT = "0x" + "11" * 20
    settings.CHAIN_DIR = tmp_path / "chain"
    monkeypatch.setenv("CHAIN_SIGNER_KEY", "0x" + "22" * 32)
    chain.chain_client_reset()
    try:
        make_contents(tenant_a, 2)
        with pytest.raises(chain.ChainUnavailable):
            registration_anchor_batch()
        with pytest.raises(chain.ChainUnavailable):
            registrations_confirm()
        assert {(r.status, r.batch_id) for r in registrations()} == {(RegistrationStatus.PENDING, None)}
        assert registry.chain_status()["ok"] is False
    finally:
        chain.chain_client_reset()


# --- Replacing a stuck transaction (the pool itself is tested on anvil) ----------------------


@pytest.mark.parametrize(("fees", "market", "expected"), [
    ({"maxFeePerGas": 10, "maxPriorityFeePerGas": 2}, {}, {"maxFeePerGas": 12, "maxPriorityFeePerGas": 3}),
    ({"maxFeePerGas": 8 * 10**9, "maxPriorityFeePerGas": 10**9}, {"maxFeePerGas": 20 * 10**9},
     {"maxFeePerGas": 20 * 10**9, "maxPriorityFeePerGas": 1_125_000_000}),
    ({"gasPrice": 1000}, {"gasPrice": 1}, {"gasPrice": 1125}),
])
def test_fee_bump_raises_every_fee_by_at_least_12_5_percent(settings, fees, market, expected):
    settings.CHAIN_FEE_BUMP_PERCENT = 5  # too little for nodes: 12.5% is the floor
    assert chain.transaction_fees_bumped(fees, market=market) == expected


def test_a_replacement_is_the_same_call_and_nonce_with_higher_fees(embedded_chain, settings):
    raw, tx_hash = chain.transaction_sign(function="anchor", args=[Web3.keccak(text="root"), 1], nonce=7)
    replacement, replacement_hash = chain.transaction_replace(raw)
    original, replaced = chain.transaction_decode(raw), chain.transaction_decode(replacement)
    assert replacement_hash != tx_hash
    for name in ("maxFeePerGas", "maxPriorityFeePerGas"):
        assert replaced.pop(name) * 1000 >= original.pop(name) * 1125
    assert replaced == original and replaced["nonce"] == 7
    settings.CHAIN_MAX_FEE_PER_GAS_WEI = chain.transaction_fees_of(raw)["maxFeePerGas"]
    with pytest.raises(chain.ChainError, match="CHAIN_MAX_FEE_PER_GAS_WEI"):
        chain.transaction_replace(raw)


# --- A development chain that was reset ------------------------------------------------------


def test_a_wiped_embedded_chain_is_recovered_and_everything_anchored_again(embedded_chain, settings, tmp_path,
                                                                           tenant_a, tenant_b):
    from accounts.models import AuditEntry

    make_contents(tenant_a, 3)
    make_contents(tenant_b, 2)
    first = registration_anchor_batch()
    assert registrations_confirm() == 5
    victim = next(r for r in registrations() if r.organization_id == tenant_b.organization.pk)
    with tenant_scope(tenant_b.organization):
        registration_revoke(registration=victim, reason="licence ended", actor=Actor.system())
    registrations_confirm()
    old_genesis = registry.chain_status()["genesis"]

    settings.CHAIN_DIR = tmp_path / "wiped"  # CHAIN_DIR lost (journal and key), the database kept
    chain.chain_client_reset()
    status = registry.chain_status()
    assert status["genesis"] != old_genesis and status["problem"].startswith("chain_replaced")
    assert not status["ok"]
    assert not chain.registry_holds(address=first.contract, root=first.merkle_root)  # no contract there now

    registrations_confirm()  # notices the reset first, before it sends or settles anything
    with dangerously_unscoped():
        assert set(RegistrationBatch.objects.values_list("status", flat=True)) == {BatchStatus.LOST}
        state = ChainState.objects.get()
        assert AuditEntry.objects.filter(action="chain.reset", target_id=str(state.chain_id)).count() == 1
    assert {r.status for r in registrations()} == {RegistrationStatus.PENDING, RegistrationStatus.REVOKED}
    assert state.epoch == 1 and state.last_reset["previous_genesis"] == old_genesis
    assert state.last_reset["batches_lost"] == 2 and state.last_reset["registrations_requeued"] == 4

    batch = registration_anchor_batch()
    assert batch.chain_epoch == 1 and batch.size == 4
    assert registrations_confirm() == 4
    for registration in registrations():
        assert proof_verify_onchain(registration) == (registration.pk != victim.pk)
    status = registry.chain_status()
    assert status["ok"] and status["last_reset"]["registrations_requeued"] == 4 and "problem" not in status


def test_the_admin_says_when_a_reset_was_recovered(embedded_chain, settings, tmp_path, client, tenant_a):
    from django.urls import reverse

    from accounts.models import User

    client.force_login(User.objects.create_superuser(email="ops@platform.test", password=None))
    make_contents(tenant_a, 2)
    registration_anchor_batch()
    registrations_confirm()
    settings.CHAIN_DIR = tmp_path / "wiped"
    chain.chain_client_reset()
    page = client.get(reverse("admin:rights_chainstate_changelist")).content.decode()
    assert "Chain problem: chain_replaced" in page and "recovered on the next batcher round" in page
    registrations_confirm()
    page = client.get(reverse("admin:rights_chainstate_changelist")).content.decode()
    assert "Chain problem" not in page and "Last reset of this development chain" in page
    assert "1 batch(es) lost, 2 registration(s) anchored again" in page
