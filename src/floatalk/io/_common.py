"""Helpers shared by the image, audio and video modules (input-file checks, exact rates)."""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from floatalk.errors import InputError

__all__ = ["check_input_file", "display_path", "exact_fraction", "short_reason"]


def display_path(path: str | os.PathLike[str]) -> str:
    """Returns the path quoted the way error messages show it (as the user typed it)."""
    return repr(os.fspath(path))


def check_input_file(path: str | os.PathLike[str], kind: str, hint: str) -> Path:
    """Checks that ``path`` names an existing, non-empty, readable regular file.

    Args:
        path: The path the user gave.
        kind: What the file should be, for messages ("image", "audio").
        hint: The fix suggested when the file is unusable, e.g. "give a PNG/JPEG/WebP file".

    Returns:
        The path as a :class:`~pathlib.Path`.

    Raises:
        InputError: If the file is missing, a directory, empty or unreadable.
    """
    shown = display_path(path)
    p = Path(path)
    if os.fspath(path) == "":
        raise InputError(f"no {kind} file given (empty path); {hint}")
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{kind} file {shown} does not exist; check the path") from None
    except PermissionError:
        raise InputError(
            f"{kind} file {shown} cannot be accessed (permission denied); "
            "check the permissions of its folders"
        ) from None
    except OSError as e:
        raise InputError(f"{kind} file {shown} cannot be accessed ({e.strerror}); {hint}") from None
    if p.is_dir():
        raise InputError(f"{kind} path {shown} is a directory, not a file; {hint}")
    if st.st_size == 0 and p.is_file():
        raise InputError(f"{kind} file {shown} is empty (0 bytes); {hint}")
    try:
        with p.open("rb") as f:
            f.read(1)
    except PermissionError:
        raise InputError(
            f"{kind} file {shown} cannot be read (permission denied); fix its permissions (chmod +r)"
        ) from None
    except OSError as e:
        raise InputError(f"{kind} file {shown} cannot be read ({e.strerror}); {hint}") from None
    return p


def exact_fraction(value: int | float | Fraction | str, name: str = "fps") -> Fraction:
    """Converts a rate such as ``25``, ``25.0``, ``29.97`` or ``Fraction(30000, 1001)`` to an exact Fraction.

    Floats are read through their shortest decimal representation, so ``29.97`` becomes
    ``2997/100`` rather than the binary approximation ``29.969999999999998863...``.

    Args:
        value: The rate.
        name: Name used in error messages.

    Returns:
        The positive rate as a :class:`fractions.Fraction`.

    Raises:
        ValueError: If the value is not a positive finite number.
    """
    try:
        if isinstance(value, (float, np.floating)):
            if not math.isfinite(value):
                raise ValueError
            frac = Fraction(repr(float(value)))
        else:
            frac = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if frac <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return frac


def short_reason(e: BaseException) -> str:
    """One-line description of an exception for error messages (FFmpeg errors without errno/path)."""
    strerror = getattr(e, "strerror", None)
    if isinstance(strerror, str) and strerror.strip():
        return strerror.strip().splitlines()[0]
    lines = str(e).strip().splitlines()
    return lines[0] if lines and lines[0] else type(e).__name__
