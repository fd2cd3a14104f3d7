"""The rights app's domain events, which higher apps subscribe to in their AppConfig.ready."""
from django.dispatch import Signal

# Sent inside the transaction that confirms registrations on chain (rights.registry), with
# `registrations` (their contents selected), `batch` and `block_number`; the generation app emits the
# owners' `content.registered` webhooks.
content_registered = Signal()
