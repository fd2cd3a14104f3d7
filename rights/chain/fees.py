"""Gas and fees of the platform's transactions: fixed gas limits, the market's fees, and the bump a
replacement needs."""
from __future__ import annotations

from django.conf import settings
from web3 import Web3

from rights.chain.node import chain_call

# Fixed gas limits: the contract's paths are short and constant, so no estimate round trip is needed.
GAS_LIMITS = {"anchor": 90_000, "register": 90_000, "revoke": 150_000, "transfer_ownership": 60_000,
              "deploy": 1_500_000}
# Nodes refuse a same-nonce replacement that does not raise both fees by 10% (geth) or more.
MIN_FEE_BUMP_PERCENT = 12.5


def transaction_fees(*, w3: Web3) -> dict:
    """EIP-1559 fees with room for the base fee to double before the transaction is mined; the
    node's gas price on a chain without a base fee."""
    tip = int(getattr(settings, "CHAIN_PRIORITY_FEE_WEI", 10**9))
    with chain_call():
        base = w3.eth.get_block("latest").get("baseFeePerGas")
        if base is None:
            return {"gasPrice": int(w3.eth.gas_price)}
    return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}


def transaction_fees_bumped(fees: dict, *, market: dict) -> dict:
    """Fees for a transaction replacing one sent with `fees` (same nonce): every fee raised by at
    least CHAIN_FEE_BUMP_PERCENT (never under 12.5%, rounded up), and never under today's market."""
    percent = max(float(getattr(settings, "CHAIN_FEE_BUMP_PERCENT", MIN_FEE_BUMP_PERCENT)), MIN_FEE_BUMP_PERCENT)
    basis_points = round(percent * 100)

    def bump(value: int) -> int:
        return value + max(1, -(-value * basis_points // 10_000))

    bumped = {name: max(bump(int(value)), int(market.get(name, 0))) for name, value in fees.items()}
    if "maxFeePerGas" in bumped:  # the tip may have grown past the cap: keep cap >= tip
        bumped["maxFeePerGas"] = max(bumped["maxFeePerGas"], bumped["maxPriorityFeePerGas"])
    return bumped
