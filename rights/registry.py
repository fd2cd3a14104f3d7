"""On-chain registration through an outbox: enqueue a content's registration, anchor pending ones
as one Merkle root per transaction, confirm from receipts, revoke, and check proofs against the chain.

Every chain transaction is signed with a nonce taken from ChainState under a row lock and stored
(raw bytes included) in the same database transaction as the work it carries; it is sent only after
that commits. So a crash or an outage at any point leaves a signed transaction that is sent again
byte for byte (same nonce, same hash: it cannot be mined twice), and pending registrations stay
pending. Batches span organizations, so this module works inside `dangerously_unscoped()`.
"""
from __future__ import annotations

import logging

from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone
from eth_abi import encode as abi_encode
from web3 import Web3

from accounts.audit import Actor, audit_record
from accounts.tenancy import dangerously_unscoped
from rights import chain
from rights.models.registry import (
    BatchKind,
    BatchStatus,
    ChainState,
    Registration,
    RegistrationBatch,
    RegistrationStatus,
)

logger = logging.getLogger(__name__)

MAX_BATCH = 10_000


# --- Leaves and Merkle trees (OpenZeppelin MerkleProof: sorted pairs, keccak256) ---------------


def registration_leaf(*, content_id: str, sha256: str, organization_public_id: str) -> str:
    """keccak256(keccak256(abi.encode(content id, sha256, organization))), as 0x-hex. Hashed twice
    like OpenZeppelin's StandardMerkleTree, so a leaf can never be mistaken for an inner node."""
    encoded = abi_encode(["string", "bytes32", "string"],
                         [content_id, bytes.fromhex(sha256), organization_public_id])
    return Web3.to_hex(Web3.keccak(Web3.keccak(encoded)))


def _pair(a: bytes, b: bytes) -> bytes:
    return Web3.keccak(a + b if a < b else b + a)


def merkle_tree(leaves: list[str]) -> tuple[str, dict[str, list[str]]]:
    """The root of distinct 0x-hex leaves and each leaf's proof (sibling hashes, bottom up).
    Leaves are sorted first so the tree does not depend on query order; an odd node moves up as is."""
    if not leaves or len(set(leaves)) != len(leaves):
        raise ValueError("merkle_tree needs distinct leaves")
    level = sorted(bytes.fromhex(leaf[2:]) for leaf in leaves)
    positions = {leaf: index for index, leaf in enumerate(level)}
    proofs: dict[bytes, list[str]] = {leaf: [] for leaf in level}
    while len(level) > 1:
        upper = [_pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        for leaf, index in positions.items():
            sibling = index ^ 1
            if sibling < len(level):
                proofs[leaf].append(Web3.to_hex(level[sibling]))
            positions[leaf] = index // 2
        level = upper
    return Web3.to_hex(level[0]), {Web3.to_hex(leaf): proof for leaf, proof in proofs.items()}


def merkle_root_from_proof(*, leaf: str, proof: list[str]) -> str:
    node = bytes.fromhex(leaf[2:])
    for sibling in proof:
        node = _pair(node, bytes.fromhex(sibling[2:]))
    return Web3.to_hex(node)


# --- Nonces ------------------------------------------------------------------------------------


def _chain_state_locked(*, w3, signer: str) -> ChainState:
    """This chain's nonce row, locked until the surrounding transaction ends."""
    chain_id = w3.eth.chain_id
    if not ChainState.objects.filter(chain_id=chain_id).exists():
        try:
            with transaction.atomic():
                ChainState.objects.create(chain_id=chain_id, signer=signer)
        except IntegrityError:
            pass  # another worker created it first
    return ChainState.objects.select_for_update().get(chain_id=chain_id)


def _nonce_allocate(*, state: ChainState, w3, signer: str) -> int:
    """The next nonce for our signer, under the ChainState row lock: past everything the node has
    seen, and past our own signed or sent transactions it has not mined yet (they hold their nonces
    until they are mined or given up). The unique (chain_id, nonce) constraint on batches is the last
    wall against a reused nonce."""
    with chain.chain_call():
        on_chain = w3.eth.get_transaction_count(signer, "pending")
    outstanding = (RegistrationBatch.objects
                   .filter(chain_id=state.chain_id, status__in=[BatchStatus.SIGNED, BatchStatus.SENT],
                           nonce__gte=on_chain)
                   .aggregate(highest=models.Max("nonce"))["highest"])
    nonce = on_chain if outstanding is None else max(on_chain, outstanding + 1)
    state.signer = signer
    state.next_nonce = nonce + 1
    state.save(update_fields=["signer", "next_nonce", "updated_at"])
    return nonce


def _transaction_create(*, kind: str, function: str, args: list, merkle_root: str, size: int) -> RegistrationBatch:
    """Inside an atomic block: allocate a nonce, sign, and store the transaction as `signed`."""
    w3 = chain.chain_client()
    signer = chain.chain_signer().address
    contract = chain.registry_address(w3)  # may deploy on first use (not in production)
    state = _chain_state_locked(w3=w3, signer=signer)
    nonce = _nonce_allocate(state=state, w3=w3, signer=signer)
    raw, tx_hash = chain.transaction_sign(function=function, args=args, nonce=nonce, w3=w3)
    return RegistrationBatch.objects.create(
        kind=kind, merkle_root=merkle_root, size=size, chain_id=state.chain_id, contract=contract,
        nonce=nonce, raw_tx=raw, tx_hash=tx_hash, status=BatchStatus.SIGNED,
    )


def _transaction_send(batch: RegistrationBatch) -> str:
    """Send (or send again) a signed transaction: "sent" when the node has it, "down", or "refused".
    An outage leaves it
    `signed` for the next round; a nonce taken by another transaction puts its work back in the queue."""
    batch.attempts += 1
    try:
        chain.transaction_send(batch.raw_tx)
    except chain.ChainError as exc:
        batch.error = f"{exc.code}: {exc}"[:2000]
        RegistrationBatch.objects.filter(pk=batch.pk).update(attempts=batch.attempts, error=batch.error)
        logger.warning("registry transaction %s (nonce %s) not sent: %s", batch.tx_hash, batch.nonce, exc)
        if isinstance(exc, chain.TransactionRejected) and exc.nonce_too_low:
            if chain.transaction_receipt(batch.tx_hash) is None:
                _batch_requeue(batch, error=f"dropped: {exc}")
                return "refused"
            # Mined already: sent before a crash that came before we could record it.
        else:
            return "down" if isinstance(exc, chain.ChainUnavailable) else "refused"
    if batch.status == BatchStatus.SIGNED:
        batch.status = BatchStatus.SENT
        batch.sent_at = timezone.now()
    batch.error = ""
    RegistrationBatch.objects.filter(pk=batch.pk).update(
        attempts=batch.attempts, status=batch.status, sent_at=batch.sent_at, error="")
    return "sent"


# --- Services ----------------------------------------------------------------------------------


def registration_enqueue(*, content) -> Registration:
    """Queue a content's registration (idempotent). Runs in the content's tenant scope."""
    registration = Registration.objects.filter(content=content).first()
    if registration is not None:
        return registration
    leaf = registration_leaf(content_id=content.content_id, sha256=content.sha256,
                             organization_public_id=content.organization.slug)
    return Registration.objects.create(content=content, organization_id=content.organization_id, leaf=leaf)


def registration_anchor_batch(*, max_size: int = 1000) -> RegistrationBatch | None:
    """Anchor up to `max_size` pending registrations as one Merkle root; None when none wait.
    Call outside a transaction: the transaction is sent after the batch is committed."""
    max_size = max(1, min(max_size, MAX_BATCH))
    with dangerously_unscoped():
        with transaction.atomic():
            pending = Registration.objects.filter(status=RegistrationStatus.PENDING, batch__isnull=True)
            if connection.features.has_select_for_update_skip_locked:
                pending = pending.select_for_update(skip_locked=True, of=("self",))
            registrations = list(pending.order_by("created_at", "id")[:max_size])
            if not registrations:
                return None
            root, proofs = merkle_tree([registration.leaf for registration in registrations])
            batch = _transaction_create(kind=BatchKind.ANCHOR, function="anchor", args=[root, len(registrations)],
                                        merkle_root=root, size=len(registrations))
            for registration in registrations:
                registration.batch = batch
                registration.proof = proofs[registration.leaf]
                registration.tx_hash = batch.tx_hash
            Registration.objects.bulk_update(registrations, ["batch", "proof", "tx_hash"], batch_size=500)
        _transaction_send(batch)
    return batch


def registration_batches_send() -> int:
    """Send again every signed transaction the node has not taken yet, lowest nonce first (a node
    may refuse a nonce gap); returns how many it took."""
    sent = 0
    with dangerously_unscoped():
        for batch in RegistrationBatch.objects.filter(status=BatchStatus.SIGNED).order_by("chain_id", "nonce"):
            outcome = _transaction_send(batch)
            if outcome == "down":
                break
            sent += outcome == "sent"
    return sent


def _batch_requeue(batch: RegistrationBatch, *, error: str) -> None:
    """The transaction will never be mined as signed: put its registrations back to pending."""
    with transaction.atomic():
        RegistrationBatch.objects.filter(pk=batch.pk).update(status=BatchStatus.FAILED, error=error[:2000])
        if batch.kind == BatchKind.ANCHOR:
            Registration.objects.filter(batch=batch).exclude(status=RegistrationStatus.REVOKED).update(
                batch=None, proof=[], tx_hash="", status=RegistrationStatus.PENDING)
            Registration.objects.filter(batch=batch, status=RegistrationStatus.REVOKED).update(
                batch=None, proof=[], tx_hash="")
        else:
            Registration.objects.filter(revocation=batch).update(revocation=None)
    logger.error("registry transaction %s (nonce %s) failed: %s", batch.tx_hash, batch.nonce, error)


def registrations_confirm(*, confirmations: int = 1) -> int:
    """Settle sent transactions from their receipts: mined ones mark their registrations anchored,
    deep enough ones confirmed. Unsent ones are sent again first. Returns how many registrations
    became confirmed. Raises ChainUnavailable when the node is down (nothing changes)."""
    w3 = chain.chain_client()
    confirmed = 0
    with dangerously_unscoped():
        registration_batches_send()
        with chain.chain_call():
            head = w3.eth.block_number
        open_batches = RegistrationBatch.objects.filter(
            status__in=[BatchStatus.SENT, BatchStatus.MINED, BatchStatus.SIGNED]).order_by("chain_id", "nonce")
        for batch in open_batches:
            receipt = chain.transaction_receipt(batch.tx_hash, w3=w3)
            if receipt is None:
                _batch_unmined(batch)
                continue
            if receipt["status"] != 1:
                _batch_requeue(batch, error=f"reverted in block {receipt['blockNumber']}")
                continue
            confirmed += _batch_mined(batch, receipt=receipt, depth=head - receipt["blockNumber"] + 1,
                                      confirmations=confirmations)
    return confirmed


def _batch_unmined(batch: RegistrationBatch) -> None:
    """No receipt: still waiting in the pool, lost by the node (resend), or replaced (requeue)."""
    if batch.status == BatchStatus.SIGNED or chain.transaction_known(batch.tx_hash):
        return
    _transaction_send(batch)


def _batch_mined(batch: RegistrationBatch, *, receipt: dict, depth: int, confirmations: int) -> int:
    now = timezone.now()
    done = depth >= confirmations
    status = BatchStatus.CONFIRMED if done else BatchStatus.MINED
    with transaction.atomic():
        RegistrationBatch.objects.filter(pk=batch.pk).update(
            status=status, block_number=receipt["blockNumber"], gas_used=receipt["gasUsed"], error="",
            confirmed_at=now if done else None)
        if batch.kind != BatchKind.ANCHOR:
            return 0
        registrations = Registration.objects.filter(batch=batch)
        registrations.update(block_number=receipt["blockNumber"], confirmations=depth, tx_hash=batch.tx_hash)
        registrations.filter(anchored_at__isnull=True).update(anchored_at=now)
        live = registrations.exclude(status=RegistrationStatus.REVOKED)
        if done:
            newly = list(live.exclude(status=RegistrationStatus.CONFIRMED).select_related("content"))
            count = live.exclude(status=RegistrationStatus.CONFIRMED).update(status=RegistrationStatus.CONFIRMED)
            _registered_webhooks(newly, batch=batch, block_number=receipt["blockNumber"])
            return count
        live.filter(status=RegistrationStatus.PENDING).update(status=RegistrationStatus.ANCHORED)
        return 0


def _registered_webhooks(registrations: list, *, batch, block_number: int) -> None:
    """`content.registered` to each owner's webhooks, sent after the commit."""
    from generation.dispatch import deliveries_dispatch
    from generation.webhooks import webhook_event_emit

    ids = []
    for registration in registrations:
        ids += webhook_event_emit(organization_id=registration.organization_id, event="content.registered", payload={
            "content_id": registration.content.content_id, "sha256": registration.content.sha256,
            "job": str(registration.content.job_id) if registration.content.job_id else None,
            "registration": {"chain_id": batch.chain_id, "contract": batch.contract, "tx_hash": batch.tx_hash,
                             "block_number": block_number, "merkle_root": batch.merkle_root,
                             "proof": registration.proof}})
    if ids:
        deliveries_dispatch([str(delivery_id) for delivery_id in ids])


def registration_revoke(*, registration: Registration, reason: str, actor: Actor) -> Registration:
    """Revoke a registration: at once in our records, and on chain (revoke(leaf, reason)) when it
    was anchored or is on its way there. Runs in the registration's tenant scope."""
    reason = reason.strip()[:200]
    if not reason:
        raise ValueError("a revocation needs a reason")
    if registration.status == RegistrationStatus.REVOKED:
        return registration
    before = {"status": registration.status}
    revocation = None
    with transaction.atomic():
        registration = Registration.objects.select_for_update().get(pk=registration.pk)
        if registration.batch_id is not None:
            with dangerously_unscoped():
                revocation = _transaction_create(kind=BatchKind.REVOKE, function="revoke",
                                                 args=[registration.leaf, reason], merkle_root=registration.leaf,
                                                 size=1)
        registration.status = RegistrationStatus.REVOKED
        registration.revoked_reason = reason
        registration.revoked_at = timezone.now()
        registration.revocation = revocation
        registration.save(update_fields=["status", "revoked_reason", "revoked_at", "revocation"])
        audit_record(actor=actor, action="registration.revoke", target=registration, before=before,
                     after={"status": registration.status, "reason": reason})
    if revocation is not None:
        with dangerously_unscoped():
            _transaction_send(revocation)
    return registration


def proof_verify_onchain(registration: Registration) -> bool:
    """Recompute the root from the leaf and the stored proof, and ask the contract whether that root
    is anchored and neither it nor the leaf is revoked. Raises ChainUnavailable when the chain is down."""
    if registration.batch_id is None:
        return False
    root = merkle_root_from_proof(leaf=registration.leaf, proof=registration.proof)
    if root != registration.batch.merkle_root:
        return False
    contract = chain.registry_contract(address=registration.batch.contract)
    with chain.chain_call():
        return bool(contract.functions.verify(registration.leaf, registration.proof).call())


def registration_status(*, content) -> str | None:
    """A content's registration status (pending, anchored, confirmed, revoked), or None if never queued."""
    return Registration.objects.filter(content=content).values_list("status", flat=True).first()
