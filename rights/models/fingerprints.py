"""Perceptual fingerprints (64-bit pHash) of sampled frames, searchable by Hamming distance.

Each hash is also stored as four 16-bit bands with an index on each: two hashes within distance d
share at least one band exactly when d < 4 (pigeonhole), and for larger radii the search probes
band neighbourhoods (multi-index hashing), so a search never scans every row.
"""
from django.db import models

from accounts.tenancy import TenantModel


class Fingerprint(TenantModel):
    id = models.BigAutoField(primary_key=True)
    content = models.ForeignKey("rights.Content", on_delete=models.CASCADE, related_name="fingerprints")
    at_s = models.FloatField(default=0, help_text="Frame time in the video")
    phash = models.BigIntegerField(help_text="64-bit pHash as a signed integer")
    band0 = models.IntegerField()
    band1 = models.IntegerField()
    band2 = models.IntegerField()
    band3 = models.IntegerField()

    class Meta:
        # phash and organization_id ride along so a band lookup reads only the index (an index-only
        # scan on PostgreSQL, where row level security checks organization_id; a covering index on SQLite).
        indexes = [models.Index(fields=[f"band{i}", "phash", "organization"], name=f"fingerprint_band{i}")
                   for i in range(4)]
