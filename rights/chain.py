"""The chain that holds the registry contract: a web3 connection, the platform's signer, the contract.

`CHAIN_RPC_URL` points at any EVM JSON-RPC node (anvil, geth, a provider). When it is empty the
platform runs an in-process EVM (py-evm through eth-tester) that persists by journaling every raw
signed transaction, with its block timestamp, under CHAIN_DIR and replaying the journal on start: the
same transactions from the same genesis give the same state, addresses and transaction hashes.
Several processes share that journal under a file lock, each catching up before it reads or writes.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

logger = logging.getLogger(__name__)

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
REGISTRY_SOURCE = CONTRACTS_DIR / "Registry.vy"
REGISTRY_ARTIFACT = CONTRACTS_DIR / "Registry.json"
# The compiler the committed artifact was built with; the source's `#pragma version` pins it too.
VYPER_VERSION = "0.4.3"

# Fixed gas limits: the contract's paths are short and constant, so no estimate round trip is needed.
GAS_LIMITS = {"anchor": 90_000, "register": 90_000, "revoke": 150_000, "transfer_ownership": 60_000,
              "deploy": 1_500_000}
EMBEDDED_GENESIS_TIMESTAMP = 1_704_067_200  # 2024-01-01; only the embedded chain's first block
EMBEDDED_BALANCE = 10**24
# Chains whose data is worthless by design (anvil and hardhat, geth --dev and ganache): when one is
# reset, the platform re-anchors on the new chain by itself. CHAIN_DEV_CHAIN_IDS replaces the list.
DEV_CHAIN_IDS = (31337, 1337)
# Nodes refuse a same-nonce replacement that does not raise both fees by 10% (geth) or more.
MIN_FEE_BUMP_PERCENT = 12.5


class ChainError(RuntimeError):
    code = "chain_error"


class ChainUnavailable(ChainError):
    """The node cannot be reached (or timed out): retry later, nothing was decided."""

    code = "chain_unavailable"


class ChainReplaced(ChainError):
    """The node serves another chain under the same chain id (its genesis block changed), and it is
    not a development chain: nothing is signed or sent until an operator has looked."""

    code = "chain_replaced"


class RegistryMissing(ChainError):
    """No registry contract where the platform expects one: anchoring there would do nothing."""

    code = "registry_missing"


class TransactionRejected(ChainError):
    """The node refused a transaction (bad nonce, fee, ...): it will not be mined as sent."""

    code = "transaction_rejected"

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


# --- Where things live -----------------------------------------------------------------------


def chain_dir() -> Path:
    path = Path(getattr(settings, "CHAIN_DIR", "") or Path(settings.VAR_DIR) / "chain")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def chain_embedded() -> bool:
    return not getattr(settings, "CHAIN_RPC_URL", "")


def chain_is_development(chain_id: int) -> bool:
    """Whether a reset of this chain may be recovered by re-anchoring on the new one: the embedded
    EVM, or a chain id in CHAIN_DEV_CHAIN_IDS (default anvil's and geth --dev's)."""
    if chain_embedded():
        return True
    configured = getattr(settings, "CHAIN_DEV_CHAIN_IDS", None)
    if configured is None:
        ids = DEV_CHAIN_IDS
    elif isinstance(configured, str):
        ids = tuple(int(part) for part in configured.replace(",", " ").split())
    else:
        ids = tuple(int(part) for part in configured)
    return chain_id in ids


def chain_genesis_hash(w3: Web3) -> str:
    """Block 0's hash, 0x-hex: it names one chain among those that share a chain id."""
    with chain_call():
        return "0x" + bytes(w3.eth.get_block(0)["hash"]).hex()


@contextmanager
def _file_lock(path: Path, *, exclusive: bool = True):
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_secret(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


# --- The signer ------------------------------------------------------------------------------


def chain_signer() -> LocalAccount:
    """The platform's signing key: a keystore file, the CHAIN_SIGNER_KEY environment variable, or
    (embedded mode only) a key generated once into CHAIN_DIR with mode 0600. Never the database."""
    keystore = getattr(settings, "CHAIN_KEYSTORE", "")
    if keystore:
        return _keystore_account(str(keystore), getattr(settings, "CHAIN_KEYSTORE_PASSWORD", ""))
    if os.environ.get("CHAIN_SIGNER_KEY"):
        return Account.from_key(os.environ["CHAIN_SIGNER_KEY"])
    if not chain_embedded():
        raise ChainError("CHAIN_RPC_URL is set but no signer: set CHAIN_KEYSTORE or CHAIN_SIGNER_KEY")
    path = chain_dir() / "signer.key"
    with _file_lock(chain_dir() / "signer.lock"):
        if not path.exists():
            _write_secret(path, Account.create().key.hex())
    return _key_account(path.read_text().strip())


@cache
def _key_account(key: str) -> LocalAccount:
    return Account.from_key(key)


@cache
def _keystore_account(path: str, password: str) -> LocalAccount:
    return Account.from_key(Account.decrypt(json.loads(Path(path).read_text()), password))


# --- The embedded EVM ------------------------------------------------------------------------


def _eth_tester_provider_class():
    from web3.providers.eth_tester import EthereumTesterProvider

    class JournaledEVMProvider(EthereumTesterProvider):
        """eth-tester's in-process EVM whose accepted raw transactions are journaled and replayed."""

        def __init__(self, directory: Path, funded: str):
            from eth_tester import EthereumTester, PyEVMBackend

            self.directory = directory
            self.journal = directory / "journal.jsonl"
            self.lock_path = directory / "journal.lock"
            self._thread_lock = threading.RLock()
            self._offset = 0
            with _file_lock(self.lock_path):
                genesis_path = directory / "genesis.json"
                if genesis_path.exists():
                    genesis = json.loads(genesis_path.read_text())
                else:
                    genesis = {"timestamp": EMBEDDED_GENESIS_TIMESTAMP, "funded": funded}
                    genesis_path.write_text(json.dumps(genesis))
            state = PyEVMBackend.generate_genesis_state(num_accounts=1)  # eth_call's default sender
            state[bytes.fromhex(genesis["funded"][2:])] = {
                "balance": EMBEDDED_BALANCE, "nonce": 0, "code": b"", "storage": {}}
            backend = PyEVMBackend(
                genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"timestamp": genesis["timestamp"]}),
                genesis_state=state,
            )
            self.backend = backend
            super().__init__(ethereum_tester=EthereumTester(backend))
            self.replayed = self._catch_up()

        def _set_next_timestamp(self, timestamp: int) -> None:
            chain = self.backend.chain
            chain.header = chain.header.copy(timestamp=timestamp)

        def _catch_up(self) -> int:
            """Apply journal entries written since we last looked (by us before a restart, or others)."""
            if not self.journal.exists():
                return 0
            applied = 0
            with open(self.journal, "rb") as handle:
                handle.seek(self._offset)
                for line in handle:
                    if not line.endswith(b"\n"):
                        break  # a torn write from a crash: ignore the partial last line
                    entry = json.loads(line)
                    self._set_next_timestamp(entry["timestamp"])
                    self.ethereum_tester.send_raw_transaction(entry["raw"])
                    self._offset += len(line)
                    applied += 1
            return applied

        def make_request(self, method, params):
            sending = method == "eth_sendRawTransaction"
            with self._thread_lock, _file_lock(self.lock_path, exclusive=sending):
                # Catching up changes only our in-memory chain, so readers need no more than a shared lock.
                if self.journal.exists() and self.journal.stat().st_size != self._offset:
                    self._catch_up()
                if not sending:
                    return super().make_request(method, params)
                parent = self.backend.chain.get_canonical_head()
                timestamp = max(int(time.time()), parent.timestamp + 1)
                self._set_next_timestamp(timestamp)
                response = super().make_request(method, params)
                if "error" not in response:
                    line = json.dumps({"raw": params[0], "timestamp": timestamp}).encode() + b"\n"
                    with open(self.journal, "ab") as handle:
                        handle.write(line)
                        handle.flush()
                        os.fsync(handle.fileno())
                    self._offset += len(line)
                return response

    return JournaledEVMProvider


def _rpc_provider_class():
    import requests
    from web3 import HTTPProvider

    class RPCProvider(HTTPProvider):
        """A JSON-RPC node over HTTP whose transport failures read as ChainUnavailable everywhere."""

        def make_request(self, method, params):
            try:
                return super().make_request(method, params)
            except (requests.ConnectionError, requests.Timeout) as exc:
                _count_error(ChainUnavailable)
                raise ChainUnavailable(f"chain node unreachable: {exc.__class__.__name__}") from exc

    return RPCProvider


# --- The connection --------------------------------------------------------------------------

_clients: dict[tuple, Web3] = {}
_clients_lock = threading.Lock()


def chain_client() -> Web3:
    """A web3 connection to the configured chain, one per process (and per configuration)."""
    key = (getattr(settings, "CHAIN_RPC_URL", ""), str(chain_dir()))
    with _clients_lock:
        w3 = _clients.get(key)
        if w3 is None:
            if key[0]:
                provider = _rpc_provider_class()(
                    key[0], request_kwargs={"timeout": getattr(settings, "CHAIN_RPC_TIMEOUT", 10)},
                    exception_retry_configuration=None)
            else:
                provider = _eth_tester_provider_class()(chain_dir(), funded=chain_signer().address)
            w3 = _clients[key] = Web3(provider)
        return w3


def chain_client_reset() -> None:
    """Forget every connection (and so the in-process EVM): the next use starts like a new process."""
    with _clients_lock:
        _clients.clear()


@contextmanager
def chain_call():
    """Map transport failures to ChainUnavailable so callers can tell 'down' from 'refused'."""
    import requests
    from web3.exceptions import ProviderConnectionError, RequestTimedOut

    try:
        yield
    except (requests.ConnectionError, requests.Timeout, ProviderConnectionError, RequestTimedOut,
            ConnectionError, TimeoutError) as exc:
        _count_error(ChainUnavailable)
        raise ChainUnavailable(f"chain node unreachable: {exc.__class__.__name__}: {exc}") from exc


def _count_error(kind: type[ChainError]) -> None:
    """platform_chain_errors_total{kind}: where an RPC call fails (the node, or the transaction)."""
    from config.metrics import CHAIN_ERRORS

    CHAIN_ERRORS.labels(kind.__name__).inc()


# --- The contract ----------------------------------------------------------------------------


def _remembered_path(chain_id: int) -> Path:
    return chain_dir() / f"registry-{chain_id}.json"


def _remembered(chain_id: int) -> dict:
    path = _remembered_path(chain_id)
    return json.loads(path.read_text()) if path.exists() else {}


def _remember(chain_id: int, **entry) -> None:
    _remembered_path(chain_id).write_text(json.dumps({**entry, "chain_id": chain_id}))


def _registry_runtime() -> bytes:
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
        with _file_lock(chain_dir() / "deploy.lock"):
            remembered = _remembered(chain_id)
            if remembered:
                if bytes(w3.eth.get_code(remembered["address"])) == _registry_runtime():
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
            if remembered and bytes(w3.eth.get_code(remembered["address"])) == _registry_runtime():
                return None
            return registry_address(w3)
        with _file_lock(chain_dir() / "deploy.lock"):
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


# --- Transactions ----------------------------------------------------------------------------


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


FEE_FIELDS = ("maxFeePerGas", "maxPriorityFeePerGas", "gasPrice")


def transaction_fees_of(raw: str) -> dict:
    """The fee fields of a signed transaction (EIP-1559 or legacy)."""
    fields = _transaction_decode(raw)
    return {name: fields[name] for name in FEE_FIELDS if name in fields}


def _transaction_decode(raw: str) -> dict:
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
    fields = _transaction_decode(raw)
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
        _count_error(TransactionRejected)
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
        status.update(contract=address, contract_ok=code == _registry_runtime())
        status["ok"] = status["contract_ok"] and not status.get("problem")
    except ChainError as exc:
        status["error"] = f"{exc.code}: {exc}"
    return status
