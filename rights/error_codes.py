"""The rights app's error codes: verification, uploaded assets, content credentials, the chain."""
from config.error_codes import ErrorCode


class RightsErrors(ErrorCode):
    # Verification and uploads.
    EMPTY_FILE = "empty_file", 400, "The file is empty."
    TOO_SMALL = "too_small", 400, "The image or video is too small to fingerprint."
    UNSUPPORTED_TYPE = ("unsupported_type", 415,
                        "Not a file type this operation takes (see the operation's description).")
    IMAGE_TOO_LARGE = "image_too_large", 413, "The image is past the pixel limit."
    THROTTLED = "throttled", 429, "Too many verifications from this address; try again later."
    NO_RIGHTS_HOLD = "no_rights_hold", 409, "There is no infringement hold waiting for a decision."
    # Content credentials (C2PA).
    CREDENTIAL_FAILED = "credential_failed", 500, "The content credential could not be made."
    CA_MISSING = "ca_missing", 503, "The signing certificate authority is not set up (manage.py setup_ca)."
    SIGNING_FAILED = "signing_failed", 500, "Signing the content credential failed."
    # The chain (step errors and health; a caller retries the unavailable ones).
    CHAIN_ERROR = "chain_error", 503, "The chain refused or failed the call."
    CHAIN_UNAVAILABLE = "chain_unavailable", 503, "The chain node cannot be reached."
    CHAIN_REPLACED = "chain_replaced", 503, "The node serves another chain than the records name; nothing is sent."
    REGISTRY_MISSING = "registry_missing", 503, "The registry contract is not deployed on this chain."
    TRANSACTION_REJECTED = "transaction_rejected", 503, "The node rejected the transaction."
