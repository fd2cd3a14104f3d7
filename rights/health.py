"""The chain's part in the health report (config/health.py), registered in RightsConfig.ready."""
from __future__ import annotations

import json
import urllib.request

from django.conf import settings

from config.health import CHECK_TIMEOUT_S
from rights.registry import chain_status


def chain_health() -> dict:
    """The chain part of the health report: the embedded chain's state, or the RPC node's chain id."""
    if not settings.CHAIN_RPC_URL:
        status = chain_status()
        if not status.get("ok"):
            raise RuntimeError("embedded chain unavailable")
        return {"status": "ok", "backend": "embedded", "chain_id": status.get("chain_id")}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(settings.CHAIN_RPC_URL, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT_S) as response:
        chain_id = int(json.load(response)["result"], 16)
    return {"status": "ok", "chain_id": chain_id}


def chain_required() -> bool:
    return bool(settings.CHAIN_RPC_URL)
