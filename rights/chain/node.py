"""The connection to the chain: the embedded EVM or an RPC node, the platform's signer, and where the chain's files live."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from django.conf import settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from rights.chain.errors import ChainError, ChainUnavailable

logger = logging.getLogger(__name__)
EMBEDDED_GENESIS_TIMESTAMP = 1_704_067_200  # 2024-01-01; only the embedded chain's first block
EMBEDDED_BALANCE = 10**24
# Chains whose data is worthless by design (anvil and hardhat, geth --dev and ganache): when one is
# reset, the platform re-anchors on the new chain by itself. CHAIN_DEV_CHAIN_IDS replaces the list.
DEV_CHAIN_IDS = (31337, 1337)


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
def chain_file_lock(path: Path, *, exclusive: bool = True):
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
    with chain_file_lock(chain_dir() / "signer.lock"):
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
            with chain_file_lock(self.lock_path):
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
            with self._thread_lock, chain_file_lock(self.lock_path, exclusive=sending):
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
                chain_error_count(ChainUnavailable)
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
        chain_error_count(ChainUnavailable)
        raise ChainUnavailable(f"chain node unreachable: {exc.__class__.__name__}: {exc}") from exc


def chain_error_count(kind: type[ChainError]) -> None:
    """platform_chain_errors_total{kind}: where an RPC call fails (the node, or the transaction)."""
    from config.metrics import CHAIN_ERRORS

    CHAIN_ERRORS.labels(kind.__name__).inc()
