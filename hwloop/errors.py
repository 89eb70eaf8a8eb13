"""The error types hwloop raises on purpose.

Every error a user can cause by bad input (a file, a parameter, a network a
target cannot represent, a bad frame on a link) is one of these, and its
message names what is wrong. The CLI prints them as one line, no traceback.
"""

from __future__ import annotations


class HwloopError(Exception):
    """Base of every error hwloop raises on purpose."""


class NetworkFileError(HwloopError):
    """A network file cannot be read: truncated, corrupt, wrong version, wrong
    shape, non-finite values. The message names the file and the problem."""


class NetworkSpecError(HwloopError):
    """A `Network` built in code is inconsistent (shapes, parameters)."""


class DatasetError(HwloopError):
    """A data set is missing, malformed or asked for with bad parameters."""


class DesignRuleError(HwloopError):
    """A network a target cannot represent. Names the rule, the layer and the limit."""

    def __init__(self, rule: str, layer: int | None, limit, detail: str = ""):
        self.rule = rule
        self.layer = layer
        self.limit = limit
        where = f"layer {layer}" if layer is not None else "network"
        msg = f"design rule '{rule}' violated in {where} (limit: {limit})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class TargetError(HwloopError):
    """A target cannot be opened or failed while running (bad URL, missing
    optional package, device not answering)."""


class OutputError(HwloopError, OSError):
    """A file cannot be written: disk full, no permission, a directory where
    the file should go. The message names the file, the reason and what
    survived (atomic writes leave the previous file as it was). Also an
    `OSError`, with the ``errno`` of the failure, for code that catches those."""

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None):
        OSError.__init__(self, errno, message)
        self.message = message
        self.filename = filename

    def __str__(self) -> str:
        return self.message
