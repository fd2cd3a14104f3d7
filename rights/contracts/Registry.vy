#pragma version 0.4.3
#pragma optimize gas
#pragma evm-version cancun
"""
@title Content ownership registry
@notice The platform's signer anchors Merkle roots of registration batches (or single
        leaves), and may revoke a root or a leaf with a reason. Anyone can check a proof.
@dev    Leaves and inner nodes are hashed as sorted pairs (OpenZeppelin MerkleProof), so a
        single registration is a tree of one leaf whose root is the leaf itself.
"""

event Anchored:
    root: indexed(bytes32)
    count: uint256

event Registered:
    leaf: indexed(bytes32)

event Revoked:
    leaf_or_root: indexed(bytes32)
    reason: String[200]

event OwnershipTransferred:
    previous_owner: indexed(address)
    new_owner: indexed(address)

MAX_PROOF: constant(uint256) = 64

owner: public(address)
# root -> block number << 64 | block timestamp; one storage slot per anchor keeps gas low.
anchors: public(HashMap[bytes32, uint256])
# leaf or root -> block number of the revocation.
revoked: public(HashMap[bytes32, uint256])


@deploy
def __init__():
    self.owner = msg.sender
    log OwnershipTransferred(previous_owner=empty(address), new_owner=msg.sender)


@external
def anchor(root: bytes32, count: uint256):
    assert msg.sender == self.owner, "not owner"
    assert self.anchors[root] == 0, "already anchored"
    self.anchors[root] = (block.number << 64) | block.timestamp
    log Anchored(root=root, count=count)


@external
def register(leaf: bytes32):
    assert msg.sender == self.owner, "not owner"
    assert self.anchors[leaf] == 0, "already anchored"
    self.anchors[leaf] = (block.number << 64) | block.timestamp
    log Registered(leaf=leaf)


@external
def revoke(leaf_or_root: bytes32, reason: String[200]):
    assert msg.sender == self.owner, "not owner"
    assert self.revoked[leaf_or_root] == 0, "already revoked"
    self.revoked[leaf_or_root] = block.number
    log Revoked(leaf_or_root=leaf_or_root, reason=reason)


@external
def transfer_ownership(new_owner: address):
    assert msg.sender == self.owner, "not owner"
    assert new_owner != empty(address), "zero address"
    log OwnershipTransferred(previous_owner=self.owner, new_owner=new_owner)
    self.owner = new_owner


@view
@external
def anchored_at(root: bytes32) -> (uint256, uint256):
    """@notice Block number and timestamp of an anchor; (0, 0) when unknown."""
    packed: uint256 = self.anchors[root]
    return packed >> 64, packed & convert(max_value(uint64), uint256)


@view
@internal
def _root(leaf: bytes32, proof: DynArray[bytes32, MAX_PROOF]) -> bytes32:
    node: bytes32 = leaf
    for sibling: bytes32 in proof:
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
    return node


@view
@external
def root_of(leaf: bytes32, proof: DynArray[bytes32, MAX_PROOF]) -> bytes32:
    return self._root(leaf, proof)


@view
@external
def verify(leaf: bytes32, proof: DynArray[bytes32, MAX_PROOF]) -> bool:
    """@notice True when the proof leads from the leaf to an anchored root and neither is revoked."""
    root: bytes32 = self._root(leaf, proof)
    return self.anchors[root] != 0 and self.revoked[root] == 0 and self.revoked[leaf] == 0
