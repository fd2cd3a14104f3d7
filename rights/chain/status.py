"""The node as the adapter sees it, for health checks and the operators' views."""
from __future__ import annotations

from typing import Any

from rights.chain.contract import registry_address, registry_runtime
from rights.chain.errors import ChainError
from rights.chain.node import (
    chain_call,
    chain_client,
    chain_embedded,
    chain_genesis_hash,
    chain_is_development,
    chain_signer,
)


def chain_node_status(*, records=None) -> dict[str, Any]:
    """The node as this adapter sees it: mode, reachability, head, genesis, signer, balance, contract;
    with `records(w3=, chain_id=, genesis=)`, what the registry's records say about this chain is added
    (rights.registry.chain_status passes its report)."""
    from django.db import DatabaseError

    status: dict[str, Any] = {"mode": "embedded" if chain_embedded() else "rpc", "ok": False}
    try:
        w3 = chain_client()
        signer = chain_signer()
        with chain_call():
            chain_id = w3.eth.chain_id
            status.update(
                chain_id=chain_id, development=chain_is_development(chain_id), genesis=chain_genesis_hash(w3),
                block_number=w3.eth.block_number, signer=signer.address,
                balance_wei=w3.eth.get_balance(signer.address),
            )
        try:
            if records is not None:
                status.update(records(w3=w3, chain_id=chain_id, genesis=status["genesis"]))
        except DatabaseError as exc:
            status["records"] = f"unavailable: {exc.__class__.__name__}"
        with chain_call():
            address = registry_address(w3, redeploy=False)  # a reset is for the batcher to recover and record
            code = bytes(w3.eth.get_code(address))
        status.update(contract=address, contract_ok=code == registry_runtime())
        status["ok"] = status["contract_ok"] and not status.get("problem")
    except ChainError as exc:
        status["error"] = f"{exc.code}: {exc}"
    return status
