"""The registry contract: its compiled artifact (Vyper), where it is deployed on the connected chain, and deploying it."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

from django.conf import settings
from web3 import Web3

from rights.chain.errors import ChainError, RegistryMissing
from rights.chain.fees import GAS_LIMITS, transaction_fees
from rights.chain.node import (
    chain_call,
    chain_client,
    chain_dir,
    chain_file_lock,
    chain_genesis_hash,
    chain_is_development,
    chain_signer,
)

logger = logging.getLogger(__name__)

CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "contracts"  # rights/contracts
REGISTRY_SOURCE = CONTRACTS_DIR / "Registry.vy"
REGISTRY_ARTIFACT = CONTRACTS_DIR / "Registry.json"
# The compiler the committed artifact was built with; the source's `#pragma version` pins it too.
VYPER_VERSION = "0.4.3"


# --- The compiled contract -------------------------------------------------------------------


def registry_artifact_compile(*, vyper_bin: str | None = None) -> dict:
    """Compile Registry.vy with the pinned vyper (its command line, so it may live in its own venv)."""
    vyper_bin = vyper_bin or os.environ.get("VYPER_BIN") or str(Path(sys.executable).parent / "vyper")
    version = subprocess.run([vyper_bin, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if not version.startswith(VYPER_VERSION + "+") and version != VYPER_VERSION:
        raise ChainError(f"Registry.vy is built with vyper {VYPER_VERSION}, found {version}")
    out = subprocess.run(
        [vyper_bin, "-f", "abi,bytecode,bytecode_runtime", str(REGISTRY_SOURCE)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    return {
        "contract": "Registry",
        "source": "rights/contracts/Registry.vy",
        "compiler": f"vyper {version}",
        "settings": {"optimize": "gas", "evm_version": "cancun"},  # from the source's pragmas
        "abi": json.loads(out[0]),
        "bytecode": out[1],
        "bytecode_runtime": out[2],
    }


def registry_artifact_write(*, vyper_bin: str | None = None) -> Path:
    """Rebuild the committed artifact: `.venv/bin/python -c 'from rights.chain import *; registry_artifact_write()'`."""
    artifact = registry_artifact_compile(vyper_bin=vyper_bin)
    REGISTRY_ARTIFACT.write_text(json.dumps(artifact, indent=1) + "\n")
    registry_artifact.cache_clear()
    return REGISTRY_ARTIFACT


@cache
def registry_artifact() -> dict:
    return json.loads(REGISTRY_ARTIFACT.read_text())


# --- The contract ----------------------------------------------------------------------------


def _remembered_path(chain_id: int) -> Path:
    return chain_dir() / f"registry-{chain_id}.json"


def _remembered(chain_id: int) -> dict:
    path = _remembered_path(chain_id)
    return json.loads(path.read_text()) if path.exists() else {}


def _remember(chain_id: int, **entry) -> None:
    _remembered_path(chain_id).write_text(json.dumps({**entry, "chain_id": chain_id}))


def registry_runtime() -> bytes:
    return bytes.fromhex(registry_artifact()["bytecode_runtime"][2:])


def _deploy_refused_in_production(why: str) -> None:
    if getattr(settings, "DEPLOYMENT", "") == "production":
        raise RegistryMissing(f"{why}: production never deploys by itself; run `manage.py deploy_registry` "
                              "and set CHAIN_CONTRACT")


def registry_address(w3: Web3 | None = None, *, redeploy: bool = True) -> str:
    """The registry's address, checked to hold code: CHAIN_CONTRACT when set (or the replacement
    deployed for it after a development chain's reset, see registry_redeploy_if_gone); otherwise
    the one we deployed on this chain (remembered under CHAIN_DIR), deploying it now on first use.
    Production never auto-deploys, and a contract that vanished is deployed again (`redeploy`) only
    on a development chain: elsewhere that is a deep reorg or the wrong node, for an operator."""
    w3 = w3 or chain_client()
    configured = getattr(settings, "CHAIN_CONTRACT", "")
    with chain_call():
        chain_id = w3.eth.chain_id
        if configured:
            address = _configured_address(chain_id)
            if not bytes(w3.eth.get_code(address)):
                raise RegistryMissing(f"no contract at {address} on chain {chain_id} (CHAIN_CONTRACT)")
            return address
        with chain_file_lock(chain_dir() / "deploy.lock"):
            remembered = _remembered(chain_id)
            if remembered:
                if bytes(w3.eth.get_code(remembered["address"])) == registry_runtime():
                    return remembered["address"]
                if not chain_is_development(chain_id):
                    raise RegistryMissing(
                        f"the registry deployed at {remembered['address']} is gone from chain {chain_id}, "
                        "which is not a development chain: not deploying another (see CHAIN_DEV_CHAIN_IDS)")
                if not redeploy:
                    raise RegistryMissing(f"the registry deployed at {remembered['address']} is gone from "
                                          f"chain {chain_id}: a reset, recovered on the next batcher round")
            _deploy_refused_in_production("CHAIN_CONTRACT is not set")
            address = registry_deploy(w3=w3)
            _remember(chain_id, address=address, genesis=chain_genesis_hash(w3))
            return address


def registry_address_in_use(w3: Web3) -> str | None:
    """The address anchors go to on this chain, without deploying or checking anything: CHAIN_CONTRACT
    (or its replacement after a development chain's reset), else the one remembered under CHAIN_DIR."""
    with chain_call():
        chain_id = w3.eth.chain_id
    if getattr(settings, "CHAIN_CONTRACT", ""):
        return _configured_address(chain_id)
    return _remembered(chain_id).get("address")


def _configured_address(chain_id: int) -> str:
    configured = Web3.to_checksum_address(settings.CHAIN_CONTRACT)
    remembered = _remembered(chain_id)
    if remembered.get("replaces") == configured:
        return remembered["address"]
    return configured


def registry_redeploy_if_gone(*, w3: Web3) -> str | None:
    """After a development chain's reset: deploy the registry again if its code is gone; returns the
    new address, or None when it is still there. A configured CHAIN_CONTRACT that is gone gets a
    replacement remembered under CHAIN_DIR for this chain id (and logged: update CHAIN_CONTRACT)."""
    with chain_call():
        chain_id = w3.eth.chain_id
        if not getattr(settings, "CHAIN_CONTRACT", ""):
            remembered = _remembered(chain_id)
            if remembered and bytes(w3.eth.get_code(remembered["address"])) == registry_runtime():
                return None
            return registry_address(w3)
        with chain_file_lock(chain_dir() / "deploy.lock"):
            current = _configured_address(chain_id)
            if bytes(w3.eth.get_code(current)):
                return None
            _deploy_refused_in_production(f"the registry at {current} is gone after a reset of chain {chain_id}")
            address = registry_deploy(w3=w3)
            configured = Web3.to_checksum_address(settings.CHAIN_CONTRACT)
            _remember(chain_id, address=address, genesis=chain_genesis_hash(w3), replaces=configured)
        logger.warning("CHAIN_CONTRACT %s is gone from the reset chain %s: deployed a replacement at %s; "
                       "set CHAIN_CONTRACT=%s", configured, chain_id, address, address)
        return address


def registry_deploy(*, w3: Web3 | None = None, nonce: int | None = None) -> str:
    """Deploy Registry from the committed artifact with the platform's signer; returns its address."""
    w3 = w3 or chain_client()
    artifact = registry_artifact()
    signer = chain_signer()
    with chain_call():
        if nonce is None:
            nonce = w3.eth.get_transaction_count(signer.address, "pending")
        tx = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"]).constructor().build_transaction(
            {"from": signer.address, "nonce": nonce, "gas": GAS_LIMITS["deploy"], **transaction_fees(w3=w3),
             "chainId": w3.eth.chain_id})
        tx_hash = w3.eth.send_raw_transaction(signer.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.1)
    if receipt["status"] != 1:
        raise ChainError(f"registry deployment reverted: {tx_hash.hex()}")
    return receipt["contractAddress"]


def registry_holds(*, address: str, root: str, revocation: bool = False, w3: Web3 | None = None) -> bool:
    """Whether the registry at `address` holds the anchor of `root` now (or, with `revocation`, its
    revocation): the chain's state, so it does not depend on a node keeping old receipts. False when
    no contract answers there any more."""
    from web3.exceptions import BadFunctionCallOutput, ContractLogicError

    contract = registry_contract(w3, address=address)
    try:
        with chain_call():
            if revocation:
                return contract.functions.revoked(root).call() != 0
            return contract.functions.anchored_at(root).call()[0] != 0
    except (BadFunctionCallOutput, ContractLogicError):
        return False


def registry_contract(w3: Web3 | None = None, *, address: str | None = None):
    w3 = w3 or chain_client()
    return w3.eth.contract(address=Web3.to_checksum_address(address) if address else registry_address(w3),
                           abi=registry_artifact()["abi"])
