"""Signing, fee bumping, sending and following the platform's transactions to the registry contract."""
from __future__ import annotations

from django.conf import settings
from web3 import Web3

from rights.chain.contract import registry_contract
from rights.chain.errors import ChainError, ChainUnavailable, TransactionRejected
from rights.chain.fees import GAS_LIMITS, transaction_fees, transaction_fees_bumped
from rights.chain.node import chain_call, chain_client, chain_error_count, chain_signer

# --- Transactions ----------------------------------------------------------------------------
FEE_FIELDS = ("maxFeePerGas", "maxPriorityFeePerGas", "gasPrice")


def transaction_fees_of(raw: str) -> dict:
    """The fee fields of a signed transaction (EIP-1559 or legacy)."""
    fields = transaction_decode(raw)
    return {name: fields[name] for name in FEE_FIELDS if name in fields}


def transaction_decode(raw: str) -> dict:
    """A signed transaction's fields, without its signature (so it can be signed again)."""
    from eth_account._utils.legacy_transactions import Transaction
    from eth_account.typed_transactions import TypedTransaction
    from hexbytes import HexBytes

    data = bytes.fromhex(raw.removeprefix("0x"))
    if data[0] <= 0x7F:  # EIP-2718 typed transaction
        fields = dict(TypedTransaction.from_bytes(HexBytes(data)).as_dict())
        fields.pop("type", None)
    else:
        fields = dict(Transaction.from_bytes(data).as_dict())
        if fields["v"] >= 35:  # EIP-155: the chain id is folded into v
            fields["chainId"] = (fields["v"] - 35) // 2
    for name in ("v", "r", "s", "yParity"):
        fields.pop(name, None)
    return fields


def transaction_sign(*, function: str, args: list, nonce: int, w3: Web3 | None = None,
                     address: str | None = None) -> tuple[str, str]:
    """Sign a call to the registry (at `address`, or registry_address()) with a given nonce; returns
    (raw transaction, tx hash) as 0x-hex. Needs the node (chain id and fees) but sends nothing."""
    w3 = w3 or chain_client()
    signer = chain_signer()
    with chain_call():
        contract = registry_contract(w3, address=address)
        tx = getattr(contract.functions, function)(*args).build_transaction({
            "from": signer.address, "nonce": nonce, "gas": GAS_LIMITS[function], **transaction_fees(w3=w3),
            "chainId": w3.eth.chain_id,
        })
    signed = signer.sign_transaction(tx)
    return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()


def transaction_replace(raw: str, *, w3: Web3 | None = None,
                        below_market_only: bool = False) -> tuple[str, str] | None:
    """The same transaction (same nonce, call and gas) signed again with bumped fees, to replace
    one that sits unmined; returns (raw, tx hash) as 0x-hex. With `below_market_only`, None when
    its fees are already at today's market (so replacements stop compounding on a chain that does
    not mine). Raises ChainError when the bumped maximum fee per gas would pass
    CHAIN_MAX_FEE_PER_GAS_WEI (0: no cap)."""
    w3 = w3 or chain_client()
    fields = transaction_decode(raw)
    fees = {name: fields[name] for name in FEE_FIELDS if name in fields}
    market = transaction_fees(w3=w3)
    if "gasPrice" in fees and "gasPrice" not in market:
        market = {"gasPrice": market["maxFeePerGas"]}
    elif "gasPrice" not in fees and "gasPrice" in market:
        market = {"maxFeePerGas": market["gasPrice"], "maxPriorityFeePerGas": 0}
    if below_market_only and all(fees[name] >= market.get(name, 0) for name in fees):
        return None
    bumped = transaction_fees_bumped(fees, market=market)
    cap = int(getattr(settings, "CHAIN_MAX_FEE_PER_GAS_WEI", 0) or 0)
    highest = bumped.get("maxFeePerGas", bumped.get("gasPrice", 0))
    if cap and highest > cap:
        raise ChainError(f"a replacement needs {highest} wei per gas, over CHAIN_MAX_FEE_PER_GAS_WEI={cap}")
    signed = chain_signer().sign_transaction({**fields, **bumped})
    return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()


def transaction_send(raw: str, *, w3: Web3 | None = None) -> str:
    """Hand a signed transaction to the node. Sending the same bytes twice is harmless: a node that
    already has it says so and it is treated as sent."""
    from web3.exceptions import Web3RPCError

    w3 = w3 or chain_client()
    try:
        with chain_call():
            return "0x" + bytes(w3.eth.send_raw_transaction(raw)).hex()
    except ChainUnavailable:
        raise
    except (Web3RPCError, Exception) as exc:  # eth-tester raises py-evm's ValidationError as is
        message = str(exc)
        if "already known" in message.lower() or "already imported" in message.lower():
            return "0x" + bytes(Web3.keccak(hexstr=raw)).hex()
        chain_error_count(TransactionRejected)
        raise TransactionRejected(message) from exc


def transaction_receipt(tx_hash: str, *, w3: Web3 | None = None) -> dict | None:
    """The receipt, or None while the transaction is not mined (or unknown to the node)."""
    from web3.exceptions import TransactionNotFound

    w3 = w3 or chain_client()
    with chain_call():
        try:
            return dict(w3.eth.get_transaction_receipt(tx_hash))
        except TransactionNotFound:
            return None


def transaction_known(tx_hash: str, *, w3: Web3 | None = None) -> bool:
    """Whether the node has the transaction at all (mined or waiting in its pool)."""
    from web3.exceptions import TransactionNotFound

    w3 = w3 or chain_client()
    with chain_call():
        try:
            w3.eth.get_transaction(tx_hash)
            return True
        except TransactionNotFound:
            return False
