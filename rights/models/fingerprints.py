"""Perceptual fingerprints (64-bit pHash) of sampled frames, searchable by Hamming distance.

`Fingerprint` is the record (which content, which frame, which hash), owned by the content's
organization. `FingerprintBucket` is the search index over all of them: multi-index hashing with one
bucket per value of each band of the hash, holding the hashes packed together, so a search reads a few
dozen buckets instead of a few thousand index entries (see rights/fingerprints.py).
"""
from django.db import models

from config.tenancy import TenantModel


class Fingerprint(TenantModel):
    id = models.BigAutoField(primary_key=True)
    content = models.ForeignKey("rights.Content", on_delete=models.CASCADE, related_name="fingerprints")
    at_s = models.FloatField(default=0, help_text="Frame time in the video")
    phash = models.BigIntegerField(help_text="64-bit pHash as a signed integer")

    class Meta:
        # The owners of the hashes a search matched are looked up by hash.
        indexes = [models.Index(fields=["phash"], name="fingerprint_phash")]


class FingerprintBucket(models.Model):
    """The stored hashes whose band `key // 8192` has the value `key % 8192`: unsigned 64-bit little-endian
    integers packed together, one per fingerprint (a hash stored twice is there twice).

    Global on purpose: it names no content or organization, only hashes; the owners of a match are read
    from `Fingerprint`, under the tenant rules. Kept in step by `fingerprints_store` in the same
    transaction; a deleted content leaves its hashes behind, which find no owner and are dropped by
    `fingerprint_buckets_rebuild`."""

    key = models.IntegerField(primary_key=True)
    hashes = models.BinaryField(default=b"")
