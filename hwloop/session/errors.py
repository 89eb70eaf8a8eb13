"""The errors a session raises on purpose (all `SessionError`, a `HwloopError`)."""

from __future__ import annotations

from hwloop.errors import HwloopError


class SessionError(HwloopError):
    """A session directory is missing, inconsistent or already complete."""
