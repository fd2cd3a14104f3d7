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

The package: merkle.py (leaves, trees, proofs), chain_state.py (which chain the records are about,
resets), outbox.py (nonces, signed transactions stored before they are sent, receipts, fee bumps),
services.py (enqueue, anchor, send, confirm, revoke, verify). Callers use this module's names.
"""
from rights.registry.chain_state import (  # noqa: F401
    chain_state_locked,
    chain_status,
    registry_chain_check,
    registry_chain_report,
)
from rights.registry.merkle import (  # noqa: F401
    merkle_root_from_proof,
    merkle_tree,
    registration_leaf,
)
from rights.registry.services import (  # noqa: F401
    MAX_BATCH,
    proof_verify_onchain,
    registration_anchor_batch,
    registration_batches_send,
    registration_enqueue,
    registration_revoke,
    registration_status,
    registrations_anchor,
    registrations_confirm,
)
