"""The embedded mode's outgoing mail: written to files under VAR_DIR/mail, readable by their owner
only, since they hold invitation and password-reset links that sign a person in."""
from __future__ import annotations

import os

from django.core.mail.backends.filebased import EmailBackend


class PrivateFileEmailBackend(EmailBackend):
    """Django's file backend, with the folder 0700 and each message file 0600 from its creation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # creates the folder (with the process umask)
        if os.stat(self.file_path).st_uid == os.getuid():  # a folder someone else provided stays theirs
            os.chmod(self.file_path, 0o700)

    def open(self):
        if self.stream is None:
            descriptor = os.open(self._get_filename(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self.stream = os.fdopen(descriptor, "ab")
            return True
        return False
