"""The errors a session raises on purpose (all `SessionError`, a `HwloopError`)."""

from __future__ import annotations

from hwloop.errors import HwloopError


class SessionError(HwloopError):
    """A session directory is missing, inconsistent or already complete."""


class SessionWriteError(SessionError):
    """Writing a session file failed (a full disk, a read-only folder). The
    file being written is left as it was: every session file is replaced
    atomically or appended to."""

    def __init__(self, path, exc: OSError):
        self.path, self.errno = path, exc.errno
        super().__init__(f"writing {path} failed: {exc.strerror or exc}")
