"""The wire protocol's own error types (device side knows nothing of hwloop).

The host driver translates these into `hwloop.errors.TargetError`; anything
here that escapes the protocol code is one of these, never a struct/index
error from a malformed frame.
"""


class WireError(Exception):
    """Base of every error the wire protocol raises."""


class FrameError(WireError):
    """Bytes between two delimiters are not a valid frame (COBS, length, CRC)."""


class LinkError(WireError):
    """The link gave up: a frame was not acknowledged after the bounded number
    of retries, or a reply did not come within its timeout."""


class LinkTimeout(LinkError):
    """Nothing (or not the awaited message) arrived before the deadline."""


class PortError(LinkError):
    """The port itself failed: the operating system reports it broken (a USB-UART
    unplugged, the pseudo-terminal of a dead emulator). Retrying on it is futile."""


class ProtocolError(WireError):
    """A well-formed frame carries a message that breaks the protocol
    (unknown type, payload of the wrong size, version mismatch)."""


class ChipLimitError(ProtocolError):
    """A chip reported a limit outside its documented range (HELLO_REPLY)."""


class RemoteError(WireError):
    """The peer answered with an ERROR message; ``code`` is the error code."""

    def __init__(self, code: int, name: str, text: str):
        self.code = code
        self.name = name
        self.text = text
        super().__init__(f"chip reports {name}: {text}" if text else f"chip reports {name}")
