"""The chain that holds the registry contract: a web3 connection, the platform's signer, the contract.

`CHAIN_RPC_URL` points at any EVM JSON-RPC node (anvil, geth, a provider). When it is empty the
platform runs an in-process EVM (py-evm through eth-tester) that persists by journaling every raw
signed transaction, with its block timestamp, under CHAIN_DIR and replaying the journal on start: the
same transactions from the same genesis give the same state, addresses and transaction hashes.
Several processes share that journal under a file lock, each catching up before it reads or writes.

The package: errors.py (what it raises), node.py (the connection, the signer, the embedded EVM),
contract.py (the compiled registry contract and its address), fees.py (gas and fees), transactions.py
(sign, bump, send, follow), status.py (the node as the adapter sees it). Callers use this module's names.
"""
from rights.chain.contract import (  # noqa: F401
    CONTRACTS_DIR,
    REGISTRY_ARTIFACT,
    REGISTRY_SOURCE,
    VYPER_VERSION,
    registry_address,
    registry_address_in_use,
    registry_artifact,
    registry_artifact_compile,
    registry_artifact_write,
    registry_contract,
    registry_deploy,
    registry_holds,
    registry_redeploy_if_gone,
    registry_runtime,
)
from rights.chain.errors import (  # noqa: F401
    ChainError,
    ChainReplaced,
    ChainUnavailable,
    RegistryMissing,
    TransactionRejected,
)
from rights.chain.fees import GAS_LIMITS, MIN_FEE_BUMP_PERCENT, transaction_fees, transaction_fees_bumped  # noqa: F401
from rights.chain.node import (  # noqa: F401
    DEV_CHAIN_IDS,
    EMBEDDED_BALANCE,
    EMBEDDED_GENESIS_TIMESTAMP,
    chain_call,
    chain_client,
    chain_client_reset,
    chain_dir,
    chain_embedded,
    chain_error_count,
    chain_file_lock,
    chain_genesis_hash,
    chain_is_development,
    chain_signer,
)
from rights.chain.status import (  # noqa: F401
    chain_node_status,
)
from rights.chain.transactions import (  # noqa: F401
    FEE_FIELDS,
    transaction_decode,
    transaction_fees_of,
    transaction_known,
    transaction_receipt,
    transaction_replace,
    transaction_send,
    transaction_sign,
)
