"""On-chain registrations through an outbox: each content's registration waits as `pending`, a batcher
anchors pending ones as a Merkle root in one transaction, and each keeps its inclusion proof."""
import uuid

from django.db import models
from django.utils import timezone

from config.tenancy import TenantModel


class RegistrationStatus(models.TextChoices):
    PENDING = "pending"
    ANCHORED = "anchored"
    CONFIRMED = "confirmed"
    REVOKED = "revoked"


class BatchKind(models.TextChoices):
    ANCHOR = "anchor"  # anchor(root, count) for a batch of registrations
    REVOKE = "revoke"  # revoke(leaf, reason) for one registration


class BatchStatus(models.TextChoices):
    SIGNED = "signed"  # nonce allocated and transaction signed; not yet accepted by a node (retried)
    SENT = "sent"  # accepted by a node, not mined yet
    MINED = "mined"  # in a block, fewer confirmations than asked for
    CONFIRMED = "confirmed"
    FAILED = "failed"  # dropped or reverted; its registrations went back to pending
    LOST = "lost"  # on a development chain that was reset; its registrations went back to pending


class RegistrationBatch(models.Model):
    """One registry transaction (usually an anchoring); spans organizations, so it is platform data
    (no tenant). The signed bytes are kept so that a send lost to an outage is repeated exactly.
    One nonce may carry several signed transactions (the first, then fee-bumped replacements):
    `transactions` keeps them all, `tx_hash`/`raw_tx` is the newest, or the one that was mined."""

    id = models.BigAutoField(primary_key=True)
    merkle_root = models.CharField(max_length=66)
    size = models.PositiveIntegerField(default=0)
    chain_id = models.BigIntegerField(default=0)
    chain_epoch = models.PositiveIntegerField(
        default=0, help_text="ChainState.epoch when signed: which incarnation of a development chain id")
    contract = models.CharField(max_length=42, blank=True)
    tx_hash = models.CharField(max_length=66, blank=True, db_index=True)
    nonce = models.BigIntegerField(null=True, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    gas_used = models.BigIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=8, choices=BatchKind.choices, default=BatchKind.ANCHOR)
    raw_tx = models.TextField(blank=True, help_text="The signed transaction, 0x-hex")
    transactions = models.JSONField(
        default=list, blank=True,
        help_text="Every transaction signed for this nonce, oldest first: hash, raw, fees, signed_at")
    attempts = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=BatchStatus.choices, default=BatchStatus.SIGNED, db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["chain_id", "chain_epoch", "nonce"],
                                               name="one_batch_per_nonce")]


class Registration(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    content = models.OneToOneField("rights.Content", on_delete=models.CASCADE, related_name="registration")
    leaf = models.CharField(max_length=66, help_text="keccak256 leaf: content id, sha256, owner")
    status = models.CharField(max_length=16, choices=RegistrationStatus.choices, default=RegistrationStatus.PENDING,
                              db_index=True)
    batch = models.ForeignKey(RegistrationBatch, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="registrations")
    proof = models.JSONField(default=list, blank=True)
    tx_hash = models.CharField(max_length=66, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    confirmations = models.PositiveIntegerField(default=0)
    revoked_reason = models.CharField(max_length=200, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation = models.ForeignKey(RegistrationBatch, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="revocations")
    created_at = models.DateTimeField(default=timezone.now)
    anchored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class ChainState(models.Model):
    """The signer's next nonce per chain, handed out under a row lock so workers never collide, and
    which chain that is: its genesis hash, and how many resets of a development chain came before."""

    chain_id = models.BigIntegerField(primary_key=True)
    signer = models.CharField(max_length=42)
    next_nonce = models.BigIntegerField(default=0)
    genesis_hash = models.CharField(max_length=66, blank=True, help_text="Block 0's hash, recorded on first use")
    epoch = models.PositiveIntegerField(default=0, help_text="Resets of this development chain recovered so far")
    last_reset = models.JSONField(default=dict, blank=True, help_text="What the last reset recovery found and did")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"chain {self.chain_id}"
