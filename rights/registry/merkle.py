"""Leaves and Merkle trees of registrations (OpenZeppelin MerkleProof: sorted pairs, keccak256)."""
from __future__ import annotations

from eth_abi import encode as abi_encode
from web3 import Web3

# --- Leaves and Merkle trees (OpenZeppelin MerkleProof: sorted pairs, keccak256) ---------------


def registration_leaf(*, content_id: str, sha256: str, organization_public_id: str) -> str:
    """keccak256(keccak256(abi.encode(content id, sha256, organization))), as 0x-hex. Hashed twice
    like OpenZeppelin's StandardMerkleTree, so a leaf can never be mistaken for an inner node."""
    encoded = abi_encode(["string", "bytes32", "string"],
                         [content_id, bytes.fromhex(sha256), organization_public_id])
    return Web3.to_hex(Web3.keccak(Web3.keccak(encoded)))


def _pair(a: bytes, b: bytes) -> bytes:
    return Web3.keccak(a + b if a < b else b + a)


def merkle_tree(leaves: list[str]) -> tuple[str, dict[str, list[str]]]:
    """The root of distinct 0x-hex leaves and each leaf's proof (sibling hashes, bottom up).
    Leaves are sorted first so the tree does not depend on query order; an odd node moves up as is."""
    if not leaves or len(set(leaves)) != len(leaves):
        raise ValueError("merkle_tree needs distinct leaves")
    level = sorted(bytes.fromhex(leaf[2:]) for leaf in leaves)
    positions = {leaf: index for index, leaf in enumerate(level)}
    proofs: dict[bytes, list[str]] = {leaf: [] for leaf in level}
    while len(level) > 1:
        upper = [_pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        for leaf, index in positions.items():
            sibling = index ^ 1
            if sibling < len(level):
                proofs[leaf].append(Web3.to_hex(level[sibling]))
            positions[leaf] = index // 2
        level = upper
    return Web3.to_hex(level[0]), {Web3.to_hex(leaf): proof for leaf, proof in proofs.items()}


def merkle_root_from_proof(*, leaf: str, proof: list[str]) -> str:
    node = bytes.fromhex(leaf[2:])
    for sibling in proof:
        node = _pair(node, bytes.fromhex(sibling[2:]))
    return Web3.to_hex(node)
