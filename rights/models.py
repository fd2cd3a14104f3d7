"""Watermarks, fingerprints, credentials and the chain registry (the rights issue fills this in)."""
