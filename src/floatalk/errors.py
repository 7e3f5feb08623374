"""Exceptions shown to users of floatalk."""

from __future__ import annotations

__all__ = ["CheckpointError", "InputError"]


class InputError(ValueError):
    """A problem with something the user supplied (a file, a path, an option).

    The message is a single line that names the problem and says how to fix it, e.g.
    ``"image 'x.png' could not be decoded (not an image or corrupt); give a PNG/JPEG/WebP file"``.
    It is meant to be printed as is, without a traceback. Line breaks in the message are
    replaced by spaces so that the one-line contract holds even for interpolated values.
    """

    def __init__(self, message: str) -> None:
        one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
        super().__init__(one_line)


class CheckpointError(InputError):
    """Weights that cannot be used: a missing file or component, wrong keys or shapes, a corrupt file.

    Like InputError, the message is one line naming the problem (and the keys involved).
    """
