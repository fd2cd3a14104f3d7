"""Rights records: protected contents, their fingerprints, and their on-chain registrations."""
from rights.models.content import Content, ContentKind, ContentSource, RecipientMark
from rights.models.fingerprints import Fingerprint
from rights.models.registry import (
                                    BatchKind,
                                    BatchStatus,
                                    ChainState,
                                    Registration,
                                    RegistrationBatch,
                                    RegistrationStatus,
)

__all__ = ["Content", "ContentKind", "ContentSource", "RecipientMark", "Fingerprint", "BatchKind", "BatchStatus", "ChainState",
           "Registration", "RegistrationBatch", "RegistrationStatus"]
