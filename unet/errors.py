"""The error a user can fix, and the argument checks that raise it.

:class:`UsageError` marks a mistake the caller can correct (a bad argument, a
folder in the wrong layout, an unreadable image): the command line prints its
message on one line and exits with 2. It is a ``ValueError``, so ``except
ValueError`` keeps working. Anything else that escapes is a bug (exit 1).

Messages name the *library's* parameters in backticks (`` `out_dir` ``,
`` `overwrite=True` ``); :func:`translate` rewrites them into the
command line's flags (``--out``, ``--overwrite``), so each layer speaks its own
language.
"""

from __future__ import annotations

import numbers
import re

_NAMED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)(=[^`]*)?`")


class UsageError(ValueError):
    """A mistake in the input or the arguments that the user can correct."""


class NaNLossError(UsageError, FloatingPointError):
    """Training diverged: the loss became NaN or infinite (lower the learning rate)."""


def translate(message, flags):
    """A library message for the command line: backticked parameter names become flags.

    Parameters
    ----------
    message : str
    flags : dict
        Parameter name -> flag, e.g. ``{"out_dir": "--out", "overwrite": "--overwrite"}``.
        `` `name` `` becomes the flag; `` `name=value` `` becomes the flag alone for
        ``True`` and ``flag value`` otherwise. Names without a flag keep their
        backticks.

    Returns
    -------
    str
        One line (line breaks and runs of spaces folded).
    """

    def replace(match):
        name, value = match.group(1), match.group(2)
        flag = flags.get(name)
        if flag is None:
            return match.group(0)
        if value is None or value == "=True":
            return flag
        return f"{flag} {value[1:].strip(chr(39) + chr(34))}"

    return " ".join(_NAMED.sub(replace, str(message)).split())


def check_choice(name, value, choices):
    """Raise :class:`UsageError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise UsageError(f"`{name}` must be one of {tuple(choices)}, got {value!r}.")
    return value


def as_pair(value, name, positive=False):
    """``(a, b)`` from a whole number or a pair of them (``None`` -> ``(None, None)``).

    NumPy integers count as whole numbers; entries of a pair may be ``None``.

    Raises
    ------
    UsageError
        For anything else, or a value below 1 when ``positive``.
    """
    if value is None:
        return (None, None)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    ok = len(pair) == 2 and all(
        v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool) and int(v) == v)
        for v in pair
    )
    if ok:
        pair = tuple(None if v is None else int(v) for v in pair)
        ok = not positive or all(v is not None and v >= 1 for v in pair)
    if not ok:
        kind = "a positive whole number" if positive else "a whole number"
        raise UsageError(f"`{name}` must be {kind} or (height, width) of them, got {value!r}.")
    return pair
