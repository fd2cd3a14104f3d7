"""The outbox of signed transactions: nonces under a row lock, transactions stored before they are sent, receipts and fee bumps."""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from rights import chain
from rights.models import BatchKind, BatchStatus, ChainState, Registration, RegistrationBatch, RegistrationStatus
from rights.registry.chain_state import chain_state_locked

logger = logging.getLogger(__name__)

# --- Nonces ------------------------------------------------------------------------------------


def _nonce_allocate(*, state: ChainState, w3, signer: str) -> int:
    """The next nonce for our signer, under the ChainState row lock: past everything the node has
    seen, and past our own transactions on this chain it has not mined yet (they hold their nonces
    until they are mined or given up) or that a lagging node does not show. The unique
    (chain_id, chain_epoch, nonce) constraint on batches is the last wall against a reused nonce."""
    with chain.chain_call():
        on_chain = w3.eth.get_transaction_count(signer, "pending")
    outstanding = (RegistrationBatch.objects
                   .filter(chain_id=state.chain_id, chain_epoch=state.epoch, nonce__gte=on_chain,
                           status__in=[BatchStatus.SIGNED, BatchStatus.SENT, BatchStatus.MINED,
                                       BatchStatus.CONFIRMED])
                   .aggregate(highest=models.Max("nonce"))["highest"])
    nonce = on_chain if outstanding is None else max(on_chain, outstanding + 1)
    state.signer = signer
    state.next_nonce = nonce + 1
    state.save(update_fields=["signer", "next_nonce", "updated_at"])
    return nonce


def batch_create(*, kind: str, function: str, args: list, merkle_root: str, size: int) -> RegistrationBatch:
    """Inside an atomic block: allocate a nonce, sign, and store the transaction as `signed`."""
    w3 = chain.chain_client()
    signer = chain.chain_signer().address
    state = chain_state_locked(w3=w3, signer=signer)
    contract = chain.registry_address(w3)  # may deploy on first use (not in production)
    nonce = _nonce_allocate(state=state, w3=w3, signer=signer)
    raw, tx_hash = chain.transaction_sign(function=function, args=args, nonce=nonce, w3=w3, address=contract)
    return RegistrationBatch.objects.create(
        kind=kind, merkle_root=merkle_root, size=size, chain_id=state.chain_id, chain_epoch=state.epoch,
        contract=contract, nonce=nonce, raw_tx=raw, tx_hash=tx_hash, status=BatchStatus.SIGNED,
        transactions=[_transaction_entry(raw, tx_hash)],
    )


def _transaction_entry(raw: str, tx_hash: str) -> dict:
    return {"hash": tx_hash, "raw": raw, "fees": chain.transaction_fees_of(raw),
            "signed_at": timezone.now().isoformat()}


def batch_transactions(batch: RegistrationBatch) -> list[dict]:
    """Every transaction signed for the batch's nonce, oldest first (rows from before replacements
    existed have only their one)."""
    return batch.transactions or [{"hash": batch.tx_hash, "raw": batch.raw_tx}]


def batch_receipt(batch: RegistrationBatch, *, w3) -> tuple[dict | None, dict | None]:
    """The receipt of whichever transaction of the batch's nonce was mined, and that transaction;
    (None, None) while none is. Newest first: that is the one usually mined."""
    for entry in reversed(batch_transactions(batch)):
        receipt = chain.transaction_receipt(entry["hash"], w3=w3)
        if receipt is not None:
            return receipt, entry
    return None, None


def batch_send(batch: RegistrationBatch) -> str:
    """Send (or send again) a signed transaction: "sent" when the node has it, "down", "underpriced"
    (refused for its fees), or "refused". An outage leaves it `signed` for the next round; a nonce
    taken by another transaction (not one of this batch's own) puts its work back in the queue."""
    batch.attempts += 1
    try:
        chain.transaction_send(batch.raw_tx)
    except chain.ChainError as exc:
        batch.error = f"{exc.code}: {exc}"[:2000]
        RegistrationBatch.objects.filter(pk=batch.pk).update(attempts=batch.attempts, error=batch.error)
        logger.warning("registry transaction %s (nonce %s) not sent: %s", batch.tx_hash, batch.nonce, exc)
        if isinstance(exc, chain.TransactionRejected) and exc.nonce_too_low:
            if batch_receipt(batch, w3=chain.chain_client())[0] is None:
                batch_requeue(batch, error=f"dropped: {exc}")
                return "refused"
            # Mined already (this one or an earlier one of its nonce): the next round settles it.
        elif isinstance(exc, chain.TransactionRejected) and exc.underpriced:
            return "underpriced"
        else:
            return "down" if isinstance(exc, chain.ChainUnavailable) else "refused"
    if batch.status == BatchStatus.SIGNED:
        batch.status = BatchStatus.SENT
        batch.sent_at = timezone.now()
    batch.error = ""
    RegistrationBatch.objects.filter(pk=batch.pk).update(
        attempts=batch.attempts, status=batch.status, sent_at=batch.sent_at, error="")
    return "sent"


def batch_fee_bump(batch: RegistrationBatch, *, w3, refused: bool = False) -> bool:
    """Replace a transaction that stayed unmined too long, or that the node `refused` for its fees
    (signed before an outage, sent after the base fee rose): the same call and nonce, signed with
    higher fees, stored (with every earlier hash of the nonce) before it is sent. Only the next
    nonce to be mined is replaced (one waiting behind it would not move), and after
    CHAIN_FEE_BUMPS_MAX replacements only while under the market, so fees never grow without end
    on a chain that does not mine. False when nothing was replaced."""
    after_s = 0 if refused else float(getattr(settings, "CHAIN_FEE_BUMP_AFTER_S", 180))
    entries = batch_transactions(batch)
    last = max(filter(None, [batch.sent_at, *(_parse_time(entry.get("signed_at")) for entry in entries)]),
               default=None)
    if last is None or (timezone.now() - last).total_seconds() < after_s:
        return False
    if not refused:
        with chain.chain_call():
            mined = w3.eth.get_transaction_count(chain.chain_signer().address, "latest")
        if mined < batch.nonce:
            return False  # an earlier nonce holds it up
    with transaction.atomic():
        locked = RegistrationBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.status not in (BatchStatus.SENT, BatchStatus.SIGNED) or locked.tx_hash != batch.tx_hash:
            return False
        try:
            replacement = chain.transaction_replace(
                locked.raw_tx, w3=w3,
                below_market_only=len(entries) > int(getattr(settings, "CHAIN_FEE_BUMPS_MAX", 10)))
            if replacement is None:
                return False
            raw, tx_hash = replacement
        except chain.ChainUnavailable:
            raise
        except chain.ChainError as exc:
            RegistrationBatch.objects.filter(pk=batch.pk).update(error=f"{exc.code}: {exc}"[:2000])
            logger.error("registry transaction %s (nonce %s) unmined, not replaced: %s",
                         batch.tx_hash, batch.nonce, exc)
            return False
        batch.transactions = [*entries, _transaction_entry(raw, tx_hash)]
        batch.raw_tx, batch.tx_hash = raw, tx_hash
        RegistrationBatch.objects.filter(pk=batch.pk).update(
            raw_tx=raw, tx_hash=tx_hash, transactions=batch.transactions)
    why = "refused for its fees" if refused else f"unmined for {round((timezone.now() - last).total_seconds())} s"
    logger.warning("registry transaction %s (nonce %s) %s: replaced by %s with fees %s",
                   entries[-1]["hash"], batch.nonce, why, tx_hash, batch.transactions[-1]["fees"])
    batch_send(batch)
    return True


def _parse_time(value: str | None):
    from django.utils.dateparse import parse_datetime

    return parse_datetime(value) if value else None


def batch_requeue(batch: RegistrationBatch, *, error: str) -> None:
    """The transaction will never be mined as signed: put its registrations back to pending."""
    with transaction.atomic():
        RegistrationBatch.objects.filter(pk=batch.pk).update(status=BatchStatus.FAILED, error=error[:2000],
                                                             tx_hash=batch.tx_hash, raw_tx=batch.raw_tx)
        if batch.kind == BatchKind.ANCHOR:
            Registration.objects.filter(batch=batch).exclude(status=RegistrationStatus.REVOKED).update(
                batch=None, proof=[], tx_hash="", status=RegistrationStatus.PENDING)
            Registration.objects.filter(batch=batch, status=RegistrationStatus.REVOKED).update(
                batch=None, proof=[], tx_hash="")
        else:
            Registration.objects.filter(revocation=batch).update(revocation=None)
    logger.error("registry transaction %s (nonce %s) failed: %s", batch.tx_hash, batch.nonce, error)
