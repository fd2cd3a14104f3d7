"""Registration's services: enqueue, anchor pending registrations in batches, send, confirm, revoke, verify a proof."""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.audit import Actor, audit_record
from config.tenancy import dangerously_unscoped
from rights import chain
from rights.models import BatchKind, BatchStatus, ChainState, Registration, RegistrationBatch, RegistrationStatus
from rights.registry.chain_state import registry_chain_check
from rights.registry.merkle import merkle_root_from_proof, merkle_tree, registration_leaf
from rights.registry.outbox import (
    batch_create,
    batch_fee_bump,
    batch_receipt,
    batch_requeue,
    batch_send,
    batch_transactions,
)
from rights.signals import content_registered

logger = logging.getLogger(__name__)

MAX_BATCH = 10_000


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
            batch = batch_create(kind=BatchKind.ANCHOR, function="anchor", args=[root, len(registrations)],
                                        merkle_root=root, size=len(registrations))
            for registration in registrations:
                registration.batch = batch
                registration.proof = proofs[registration.leaf]
                registration.tx_hash = batch.tx_hash
            Registration.objects.bulk_update(registrations, ["batch", "proof", "tx_hash"], batch_size=500)
        batch_send(batch)
    return batch


def registration_batches_send(*, state: ChainState | None = None) -> int:
    """Send again every signed transaction of this chain the node has not taken yet, lowest nonce
    first (a node may refuse a nonce gap); returns how many it took. Checks the chain first."""
    sent = 0
    with dangerously_unscoped():
        state = state or registry_chain_check()
        signed = RegistrationBatch.objects.filter(chain_id=state.chain_id, chain_epoch=state.epoch,
                                                  status=BatchStatus.SIGNED)
        for batch in signed.order_by("nonce"):
            outcome = batch_send(batch)
            if outcome == "underpriced":
                batch_fee_bump(batch, w3=chain.chain_client(), refused=True)
                batch.refresh_from_db(fields=["status"])
                outcome = "sent" if batch.status == BatchStatus.SENT else outcome
            if outcome == "down":
                break
            sent += outcome == "sent"
    return sent


def registrations_confirm(*, confirmations: int = 1) -> int:
    """Settle this chain's sent transactions from their receipts: mined ones mark their registrations
    anchored, deep enough ones confirmed; ones unmined too long are replaced with higher fees. The
    chain is checked and unsent ones are sent again first. Returns how many registrations became
    confirmed. Raises ChainUnavailable when the node is down (nothing changes)."""
    w3 = chain.chain_client()
    confirmed = 0
    with dangerously_unscoped():
        state = registry_chain_check(w3=w3)
        registration_batches_send(state=state)
        with chain.chain_call():
            head = w3.eth.block_number
        open_batches = RegistrationBatch.objects.filter(
            chain_id=state.chain_id, chain_epoch=state.epoch,
            status__in=[BatchStatus.SENT, BatchStatus.MINED, BatchStatus.SIGNED]).order_by("nonce")
        for batch in open_batches:
            receipt, mined = batch_receipt(batch, w3=w3)
            if receipt is None:
                _batch_unmined(batch, w3=w3)
                continue
            batch.tx_hash, batch.raw_tx = mined["hash"], mined["raw"]
            if receipt["status"] != 1:
                batch_requeue(batch, error=f"reverted in block {receipt['blockNumber']}")
                continue
            if not any(log["address"].lower() == batch.contract.lower() for log in receipt["logs"]):
                # A call to an address without code succeeds and does nothing.
                batch_requeue(batch, error=f"mined in block {receipt['blockNumber']} without an event from "
                                            f"the registry at {batch.contract}: no contract there")
                continue
            # The head was read before this receipt: a block mined since then is still a block.
            head = max(head, receipt["blockNumber"])
            confirmed += _batch_mined(batch, receipt=receipt, depth=head - receipt["blockNumber"] + 1,
                                      confirmations=confirmations)
    return confirmed


def _batch_unmined(batch: RegistrationBatch, *, w3) -> None:
    """No receipt: still waiting in the pool (replaced with higher fees when it waited too long),
    or lost by the node (sent again)."""
    if batch.status == BatchStatus.SIGNED:
        return
    if not any(chain.transaction_known(entry["hash"], w3=w3) for entry in reversed(batch_transactions(batch))):
        if batch_send(batch) == "underpriced":
            batch_fee_bump(batch, w3=w3, refused=True)
        return
    if batch.status == BatchStatus.SENT:
        batch_fee_bump(batch, w3=w3)


def _batch_mined(batch: RegistrationBatch, *, receipt: dict, depth: int, confirmations: int) -> int:
    now = timezone.now()
    done = depth >= confirmations
    status = BatchStatus.CONFIRMED if done else BatchStatus.MINED
    with transaction.atomic():
        RegistrationBatch.objects.filter(pk=batch.pk).update(
            status=status, block_number=receipt["blockNumber"], gas_used=receipt["gasUsed"], error="",
            tx_hash=batch.tx_hash, raw_tx=batch.raw_tx, confirmed_at=now if done else None)
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
    """Tell the apps above (rights.signals.content_registered) in this transaction: the generation app
    turns it into `content.registered` webhook deliveries, sent after the commit."""

    if registrations:
        content_registered.send(sender=Registration, registrations=registrations, batch=batch,
                                block_number=block_number)


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
                revocation = batch_create(kind=BatchKind.REVOKE, function="revoke",
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
            batch_send(revocation)
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


def registrations_anchor() -> int:
    """The registration batcher: anchor pending registrations, then confirm sent batches. A chain
    outage only delays this; the outbox keeps everything for the next sweep."""
    batches = 0
    try:
        while registration_anchor_batch(max_size=settings.REGISTRY_BATCH_SIZE) is not None:
            batches += 1
        registrations_confirm(confirmations=settings.REGISTRY_CONFIRMATIONS)
    except chain.ChainError as exc:
        logger.warning("registry batcher: chain unavailable (%s); will retry", exc)
    return batches
