"""On-chain registration through an outbox: enqueue a content's registration, anchor pending ones
as one Merkle root per transaction, confirm from receipts, revoke, and check proofs against the chain.

Every chain transaction is signed with a nonce taken from ChainState under a row lock and stored
(raw bytes included) in the same database transaction as the work it carries; it is sent only after
that commits. So a crash or an outage at any point leaves a signed transaction that is sent again
byte for byte (same nonce, same hash: it cannot be mined twice), and pending registrations stay
pending. Batches span organizations, so this module works inside `dangerously_unscoped()`.

A transaction left unmined for CHAIN_FEE_BUMP_AFTER_S is signed again with the same nonce and fees
raised by CHAIN_FEE_BUMP_PERCENT (at least 12.5%); the batch keeps every hash of its nonce and is
settled by whichever one is mined (only one can be).

The records name one chain: ChainState keeps its genesis (block 0) hash. When the node's genesis
changes under the same chain id, or the newest batch we saw mined is gone from it, the chain was
reset or reorganised. The rule: only a development chain (the embedded EVM, or a chain id in
CHAIN_DEV_CHAIN_IDS: anvil's 31337 and geth --dev's 1337 by default) is recovered by itself: its
batches become `lost`, their registrations pending again (revoked ones stay revoked, off chain), the
nonce is taken from the node, the registry is deployed again if its code is gone, and the reset is
recorded (ChainState.last_reset, the audit log, an error in the log); the batcher then anchors them
all again. Any other chain is never re-anchored: a changed genesis stops signing and sending for it
(ChainReplaced: the node serves another network), and anchors gone after their confirmations are
logged as errors and reported by chain_status, the records left as they are, for an operator.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone
from eth_abi import encode as abi_encode
from web3 import Web3

from accounts.audit import Actor, audit_record
from config.tenancy import dangerously_unscoped
from rights import chain
from rights.models.registry import (
    BatchKind,
    BatchStatus,
    ChainState,
    Registration,
    RegistrationBatch,
    RegistrationStatus,
)
from rights.signals import content_registered

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


# --- Which chain the records are about ----------------------------------------------------------


def _chain_state_locked(*, w3, signer: str) -> ChainState:
    """This chain's row, locked until the surrounding transaction ends, once the node is known to
    serve the chain the records are about: the same genesis, and the newest batch we saw mined still
    there. A development chain that was reset is recovered here, under the lock, so by one worker;
    another chain whose genesis changed raises ChainReplaced, so nothing is signed or sent for it."""
    with chain.chain_call():
        chain_id = w3.eth.chain_id
    genesis = chain.chain_genesis_hash(w3)
    if not ChainState.objects.filter(chain_id=chain_id).exists():
        try:
            with transaction.atomic():
                ChainState.objects.create(chain_id=chain_id, signer=signer, genesis_hash=genesis)
        except IntegrityError:
            pass  # another worker created it first
    state = ChainState.objects.select_for_update().get(chain_id=chain_id)
    development = chain.chain_is_development(chain_id)
    if not state.genesis_hash:  # a row from before genesis hashes were recorded
        state.genesis_hash = genesis
        state.save(update_fields=["genesis_hash", "updated_at"])
    elif state.genesis_hash != genesis:
        reason = f"genesis changed from {state.genesis_hash} to {genesis}"
        if not development:
            logger.critical("chain %s: %s; not a development chain, so nothing is signed or sent for it until "
                            "the node serves the recorded chain again (see CHAIN_DEV_CHAIN_IDS)", chain_id, reason)
            raise chain.ChainReplaced(f"chain {chain_id}: {reason}")
        _chain_reset_recover(state=state, w3=w3, signer=signer, genesis=genesis, reason=reason)
        return state
    vanished = _batch_vanished(state=state, w3=w3)
    if vanished is not None:
        reason = _vanished_reason(vanished)
        if development:
            _chain_reset_recover(state=state, w3=w3, signer=signer, genesis=genesis, reason=reason)
        else:
            logger.error("chain %s: %s: a reorg deeper than the confirmations, a node out of sync or another "
                         "network; records kept as they are, nothing re-anchored", chain_id, reason)
    return state


def _batch_vanished(*, state: ChainState, w3) -> RegistrationBatch | None:
    """The newest batch we saw mined on this chain, if the registry no longer holds what it wrote
    (read from the contract's state, not from receipts that a node may prune). On a development
    chain any mined one counts (those chains do not reorganise); elsewhere only a confirmed one: a
    shallow reorg that drops a mined one is handled by sending it again."""
    statuses = [BatchStatus.CONFIRMED]
    if chain.chain_is_development(state.chain_id):
        statuses.append(BatchStatus.MINED)
    newest = (RegistrationBatch.objects
              .filter(chain_id=state.chain_id, chain_epoch=state.epoch, status__in=statuses)
              .order_by("-block_number", "-nonce").first())
    if newest is None or chain.registry_holds(address=newest.contract, root=newest.merkle_root,
                                              revocation=newest.kind == BatchKind.REVOKE, w3=w3):
        return None
    return newest


def _vanished_reason(batch: RegistrationBatch) -> str:
    return (f"batch {batch.pk} ({batch.kind} {batch.merkle_root}, tx {batch.tx_hash}, block {batch.block_number}) "
            f"is no longer in the registry at {batch.contract}")


def registry_chain_check(*, w3=None) -> ChainState:
    """Before sending or settling anything: make sure the node still serves the chain the records
    are about, recovering a development chain that was reset (see the module's rule)."""
    w3 = w3 or chain.chain_client()
    with transaction.atomic():
        return _chain_state_locked(w3=w3, signer=chain.chain_signer().address)


def _chain_reset_recover(*, state: ChainState, w3, signer: str, genesis: str, reason: str) -> None:
    """A development chain was reset: nothing we anchored on it exists any more. Its batches become
    `lost` and their registrations pending again, the nonce comes from the node, the registry is
    deployed again when its code is gone, and the reset is recorded. Under the ChainState lock."""
    redeployed = chain.registry_redeploy_if_gone(w3=w3)
    with chain.chain_call():
        nonce = w3.eth.get_transaction_count(signer, "pending")
    lost = (RegistrationBatch.objects.filter(chain_id=state.chain_id, chain_epoch=state.epoch)
            .exclude(status__in=[BatchStatus.FAILED, BatchStatus.LOST]))
    batches = lost.count()
    off_chain = {"batch": None, "proof": [], "tx_hash": "", "block_number": None, "confirmations": 0,
                 "anchored_at": None}
    anchored = Registration.objects.filter(batch__in=lost.values("pk"))
    requeued = anchored.exclude(status=RegistrationStatus.REVOKED).update(
        status=RegistrationStatus.PENDING, **off_chain)
    anchored.update(**off_chain)  # the revoked ones: off chain, and staying revoked
    Registration.objects.filter(revocation__in=lost.values("pk")).update(revocation=None)
    lost.update(status=BatchStatus.LOST, error=f"chain reset: {reason}"[:2000])
    before = {"genesis_hash": state.genesis_hash, "epoch": state.epoch, "next_nonce": state.next_nonce}
    state.last_reset = {"at": timezone.now().isoformat(), "reason": reason, "previous_genesis": state.genesis_hash,
                        "batches_lost": batches, "registrations_requeued": requeued, "nonce": nonce,
                        "registry_redeployed": redeployed}
    state.genesis_hash = genesis
    state.epoch += 1
    state.signer = signer
    state.next_nonce = nonce
    state.save(update_fields=["genesis_hash", "epoch", "signer", "next_nonce", "last_reset", "updated_at"])
    audit_record(actor=Actor.system(), action="chain.reset", target=state, before=before,
                 after={"genesis_hash": genesis, "epoch": state.epoch, "next_nonce": nonce, **state.last_reset})
    logger.error("development chain %s was reset (%s): %s batch(es) lost, %s registration(s) back to pending, "
                 "nonce %s from the node%s", state.chain_id, reason, batches, requeued, nonce,
                 f", registry deployed again at {redeployed}" if redeployed else "")


def chain_status() -> dict:
    """For health checks: the node (rights.chain.chain_node_status) and what the registry's records say
    about this chain: the last reset recovered (`last_reset`), or a `problem` (a reset not recovered yet,
    or anchors gone from a chain that is not a development one)."""
    return chain.chain_node_status(records=registry_chain_report)


def registry_chain_report(*, w3, chain_id: int, genesis: str) -> dict:
    """What the records say about the chain the node serves now, for chain_status: the last reset
    recovered, and a `problem` (recovered on the next round on a development chain; elsewhere for an
    operator to look at)."""
    state = ChainState.objects.filter(chain_id=chain_id).first()
    if state is None:
        return {}
    report: dict = {"epoch": state.epoch}
    if state.last_reset:
        report["last_reset"] = state.last_reset
    development = chain.chain_is_development(chain_id)
    then = "recovered on the next batcher round" if development else "left for an operator, nothing re-anchored"
    if state.genesis_hash and state.genesis_hash != genesis:
        report["problem"] = f"chain_replaced: genesis {genesis}, recorded {state.genesis_hash}; {then}"
    else:
        vanished = _batch_vanished(state=state, w3=w3)
        if vanished is not None:
            report["problem"] = f"anchors_missing: {_vanished_reason(vanished)}; {then}"
    return report


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


def _transaction_create(*, kind: str, function: str, args: list, merkle_root: str, size: int) -> RegistrationBatch:
    """Inside an atomic block: allocate a nonce, sign, and store the transaction as `signed`."""
    w3 = chain.chain_client()
    signer = chain.chain_signer().address
    state = _chain_state_locked(w3=w3, signer=signer)
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


def _batch_transactions(batch: RegistrationBatch) -> list[dict]:
    """Every transaction signed for the batch's nonce, oldest first (rows from before replacements
    existed have only their one)."""
    return batch.transactions or [{"hash": batch.tx_hash, "raw": batch.raw_tx}]


def _batch_receipt(batch: RegistrationBatch, *, w3) -> tuple[dict | None, dict | None]:
    """The receipt of whichever transaction of the batch's nonce was mined, and that transaction;
    (None, None) while none is. Newest first: that is the one usually mined."""
    for entry in reversed(_batch_transactions(batch)):
        receipt = chain.transaction_receipt(entry["hash"], w3=w3)
        if receipt is not None:
            return receipt, entry
    return None, None


def _transaction_send(batch: RegistrationBatch) -> str:
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
            if _batch_receipt(batch, w3=chain.chain_client())[0] is None:
                _batch_requeue(batch, error=f"dropped: {exc}")
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


def _batch_fee_bump(batch: RegistrationBatch, *, w3, refused: bool = False) -> bool:
    """Replace a transaction that stayed unmined too long, or that the node `refused` for its fees
    (signed before an outage, sent after the base fee rose): the same call and nonce, signed with
    higher fees, stored (with every earlier hash of the nonce) before it is sent. Only the next
    nonce to be mined is replaced (one waiting behind it would not move), and after
    CHAIN_FEE_BUMPS_MAX replacements only while under the market, so fees never grow without end
    on a chain that does not mine. False when nothing was replaced."""
    after_s = 0 if refused else float(getattr(settings, "CHAIN_FEE_BUMP_AFTER_S", 180))
    entries = _batch_transactions(batch)
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
    _transaction_send(batch)
    return True


def _parse_time(value: str | None):
    from django.utils.dateparse import parse_datetime

    return parse_datetime(value) if value else None


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


def registration_batches_send(*, state: ChainState | None = None) -> int:
    """Send again every signed transaction of this chain the node has not taken yet, lowest nonce
    first (a node may refuse a nonce gap); returns how many it took. Checks the chain first."""
    sent = 0
    with dangerously_unscoped():
        state = state or registry_chain_check()
        signed = RegistrationBatch.objects.filter(chain_id=state.chain_id, chain_epoch=state.epoch,
                                                  status=BatchStatus.SIGNED)
        for batch in signed.order_by("nonce"):
            outcome = _transaction_send(batch)
            if outcome == "underpriced":
                _batch_fee_bump(batch, w3=chain.chain_client(), refused=True)
                batch.refresh_from_db(fields=["status"])
                outcome = "sent" if batch.status == BatchStatus.SENT else outcome
            if outcome == "down":
                break
            sent += outcome == "sent"
    return sent


def _batch_requeue(batch: RegistrationBatch, *, error: str) -> None:
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
            receipt, mined = _batch_receipt(batch, w3=w3)
            if receipt is None:
                _batch_unmined(batch, w3=w3)
                continue
            batch.tx_hash, batch.raw_tx = mined["hash"], mined["raw"]
            if receipt["status"] != 1:
                _batch_requeue(batch, error=f"reverted in block {receipt['blockNumber']}")
                continue
            if not any(log["address"].lower() == batch.contract.lower() for log in receipt["logs"]):
                # A call to an address without code succeeds and does nothing.
                _batch_requeue(batch, error=f"mined in block {receipt['blockNumber']} without an event from "
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
    if not any(chain.transaction_known(entry["hash"], w3=w3) for entry in reversed(_batch_transactions(batch))):
        if _transaction_send(batch) == "underpriced":
            _batch_fee_bump(batch, w3=w3, refused=True)
        return
    if batch.status == BatchStatus.SENT:
        _batch_fee_bump(batch, w3=w3)


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
