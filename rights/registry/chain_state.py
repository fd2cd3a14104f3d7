"""Which chain the records are about: the ChainState row, and finding and recovering a reset or reorganised chain."""
from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import Actor, audit_record
from rights import chain
from rights.models import BatchKind, BatchStatus, ChainState, Registration, RegistrationBatch, RegistrationStatus

logger = logging.getLogger(__name__)

# --- Which chain the records are about ----------------------------------------------------------


def chain_state_locked(*, w3, signer: str) -> ChainState:
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
        return chain_state_locked(w3=w3, signer=chain.chain_signer().address)


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
