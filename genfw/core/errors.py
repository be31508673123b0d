"""User-facing errors: the CLI prints these as one line, never as a traceback."""
from __future__ import annotations

import difflib
from typing import Iterable


class GenfwError(Exception):
    """A mistake the user can fix; the message says what is wrong and how to fix it."""


class ConfigError(GenfwError):
    """Bad configuration: unknown key, bad value, bad override."""


class UnknownComponentError(GenfwError):
    """A component name that is not registered."""


class DuplicateComponentError(GenfwError):
    """Two plugins registered the same name."""


class MissingWeightsError(GenfwError):
    """A pretrained asset could not be found offline."""


def suggest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' or '' when nothing is close."""
    unique = list(dict.fromkeys(choices))  # callers often pass full and short names that coincide
    close = difflib.get_close_matches(word, unique, n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
