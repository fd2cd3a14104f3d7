"""The generation app's error codes: jobs, budgets, content policy, providers, webhooks."""
from config.error_codes import ErrorCode


class GenerationErrors(ErrorCode):
    # Jobs.
    INVALID_HEADER = "invalid_header", 400, "A header is malformed (an Idempotency-Key over 100 characters)."
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch", 409, "This Idempotency-Key was used for a different request."
    JOB_FINISHED = "job_finished", 409, "The job already finished."
    JOB_NOT_RETRYABLE = "job_not_retryable", 409, "Only a failed or cancelled job can be retried."
    JOB_CANCELLED = "job_cancelled", 409, "The job was cancelled."
    STORYBOARD_NOT_READY = "storyboard_not_ready", 409, "The storyboard is not ready yet."
    NOT_AWAITING_APPROVAL = "not_awaiting_approval", 409, "The job is not waiting for approval."
    RIGHTS_HOLD = "rights_hold", 409, "Held for a possible infringement: an operator must release it."
    # Review and delivery (versions, comments, decisions, share links).
    NOT_A_REVIEWER = "not_a_reviewer", 403, "Reviewers are assigned to this job and you are not one of them."
    VERSION_NOT_CURRENT = "version_not_current", 409, "Only the job's current version can be approved or rejected."
    NO_VERSION = "no_version", 409, "The job has no composed version yet."
    COMMENT_EDIT_CLOSED = "comment_edit_closed", 409, "Comments can be edited by their author for a short while only."
    SHARE_LINK_GONE = "share_link_gone", 410, "The share link expired or was revoked."
    SHARE_PASSPHRASE = "share_passphrase", 403, "The share link needs its passphrase (or it was wrong)."
    SHARE_THROTTLED = "share_throttled", 429, "Too many wrong passphrases: wait, then try again."
    SHARE_NOT_ALLOWED = "share_not_allowed", 403, "The share link does not allow this (download or comments)."
    SHARE_NOT_READY = "share_not_ready", 409, "The shared version has no video yet."
    # Budgets and content policy.
    BUDGET_EXCEEDED = "budget_exceeded", 402, "Over the organization's monthly or the member's daily budget."
    CONTENT_REFUSED = "content_refused", 422, "The content policy refused the text (a blocked term, or moderation)."
    MODERATION_UNAVAILABLE = "moderation_unavailable", 503, "The moderation provider could not be reached."
    # Providers (their codes reach job and step errors).
    INVALID_PROVIDER_SETTINGS = "invalid_provider_settings", 400, "A provider's settings are invalid."
    PROVIDER_ERROR = "provider_error", 502, "The provider failed."
    PROVIDER_REFUSED = "provider_refused", 422, "The provider refused the input; it is not retried."
    PROVIDER_REDIRECT = "provider_redirect", 502, "The endpoint answered a redirect; redirects are not followed."
    PROVIDER_HTTP_ERROR = "provider_http_error", 502, "The endpoint answered an error status."
    PROVIDER_TIMEOUT = "provider_timeout", 504, "The endpoint did not answer in time."
    PROVIDER_UNREACHABLE = "provider_unreachable", 502, "No connection to the endpoint could be made."
    PROVIDER_BAD_ANSWER = "provider_bad_answer", 502, "The endpoint's answer could not be read."
    PROVIDER_INVALID_OUTPUT = "provider_invalid_output", 502, "The provider's output missed the stage's schema twice."
    PROVIDER_JOB_FAILED = "provider_job_failed", 502, "The endpoint's render job (a video) ended in failure."
    PROVIDER_DEADLINE = "provider_deadline", 504, "The endpoint's render job did not finish before the deadline."
    PROVIDER_MISCONFIGURED = ("provider_misconfigured", 400,
                              "The provider is not configured (no key, an unknown setting).")
    PROVIDER_MODEL_MISSING = ("provider_model_missing", 400,
                              "No loadable model at the provider's local model path (models are never downloaded).")
    PROVIDER_UNAVAILABLE = ("provider_unavailable", 503,
                            "This worker cannot run the provider (its packages or its device are missing).")
    # Steps (step errors).
    INTERNAL_ERROR = "internal_error", 500, "A step failed on our side."
    LEASE_EXPIRED = "lease_expired", 500, "The worker running a step stopped responding too often."
    # Review (the automatic checks of the composed video).
    REVIEW_FAILED = "review_failed", 422, "The composed video failed an automatic review check."
    REVIEW_NARRATION_SILENT = "review_narration_silent", 422, "Narration was asked for but the audio is silent."
    REVIEW_NARRATION_OVERRUN = "review_narration_overrun", 422, "A narration line runs past the end of its shot."
    REVIEW_LOUDNESS = "review_loudness", 422, "The mix is outside -16 ± 2 LUFS integrated or peaks over -1 dBTP."
    REVIEW_SUBTITLE_OVERFLOW = "review_subtitle_overflow", 422, "A subtitle has more than two lines or a line too long."
    # Webhooks.
    WEBHOOK_URL_NOT_ALLOWED = "webhook_url_not_allowed", 400, "The webhook URL is refused by the outbound guard."
    INVALID_EVENTS = "invalid_events", 400, "Subscribe to at least one known event."
    WEBHOOK_LIMIT = "webhook_limit", 409, "The organization is at its limit of webhooks."
