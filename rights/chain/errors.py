"""What the chain adapter raises: each error has a stable `code`, and the callers decide what is retried."""
from __future__ import annotations

import re

from rights.error_codes import RightsErrors


class ChainError(RuntimeError):
    code = RightsErrors.CHAIN_ERROR


class ChainUnavailable(ChainError):
    """The node cannot be reached (or timed out): retry later, nothing was decided."""

    code = RightsErrors.CHAIN_UNAVAILABLE


class ChainReplaced(ChainError):
    """The node serves another chain under the same chain id (its genesis block changed), and it is
    not a development chain: nothing is signed or sent until an operator has looked."""

    code = RightsErrors.CHAIN_REPLACED


class RegistryMissing(ChainError):
    """No registry contract where the platform expects one: anchoring there would do nothing."""

    code = RightsErrors.REGISTRY_MISSING


class TransactionRejected(ChainError):
    """The node refused a transaction (bad nonce, fee, ...): it will not be mined as sent."""

    code = RightsErrors.TRANSACTION_REJECTED

    @property
    def nonce_too_low(self) -> bool:
        message = str(self).lower()
        if "nonce too low" in message:  # geth, anvil
            return True
        expected = re.search(r"invalid transaction nonce: expected (\d+), but got (\d+)", message)  # py-evm
        return bool(expected) and int(expected.group(2)) < int(expected.group(1))

    @property
    def underpriced(self) -> bool:
        """Refused for its fees (below the base fee, or a replacement not raising them enough)."""
        message = str(self).lower()
        return any(sign in message for sign in ("underpriced", "less than block base fee", "fee too low",
                                                "gas price too low", "feecap"))
