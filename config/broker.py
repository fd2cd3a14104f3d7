"""The embedded mode's broker: kombu's filesystem transport (message files in a folder under VAR_DIR), with
each message written whole before it can be seen.

kombu's own `_put` opens the message file under its final name and then writes it, while `_get` takes any
file with that name: a worker polling at the wrong moment moved away an empty file and read nothing, and
the JSON error stopped the worker for good (seen under load by bench/pipeline.py). Here a message is
written under a name no reader takes (`.part` after the queue's suffix) and renamed into place, which is
atomic; a file that still reads as empty or broken is logged and dropped rather than stopping the worker
(the sweeper dispatches a lost step again).

The URL scheme `embedded://` names it; config/celery.py registers it with kombu.
"""
from __future__ import annotations

import logging
import os
import uuid
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)

SCHEME = "embedded"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # readers take only names ending in ".<queue>.msg"
        with open(partial, "wb") as handle:
            handle.write(str_to_bytes(dumps(payload)))
        os.replace(partial, final)

    def _get(self, queue):
        while True:
            try:
                return super()._get(queue)
            except ValueError:  # a message file that is not JSON (written by something else): dropped
                logger.warning("dropped an unreadable message file of queue %s", queue)


class Transport(filesystem.Transport):
    Channel = Channel
    driver_type = driver_name = SCHEME


def register() -> None:
    """Make `embedded://` mean this transport (every process that sends or takes tasks imports config)."""
    TRANSPORT_ALIASES.setdefault(SCHEME, "config.broker:Transport")
