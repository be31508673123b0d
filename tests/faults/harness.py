"""Fault-injection bookkeeping: every injected fault is one `tried` case whose outcome is
  clean      refused with a one-line error (or, where the fault is harmless, handled and reported),
  traceback  an exception that is not a user-facing error escaped,
  silent     the bad input was accepted without a word.
The suite prints the counts at the end and each test fails on any traceback or silent case."""
from __future__ import annotations

import traceback as tb
from collections import Counter

from genfw import GenfwError

COUNTS: Counter = Counter()
FAILURES: list[str] = []


def record(label: str, outcome: str, detail: str = "") -> str:
    COUNTS["tried"] += 1
    COUNTS[outcome] += 1
    if outcome != "clean":
        FAILURES.append(f"{outcome}: {label}: {detail}")
    return outcome


def expect_error(label: str, fn, match: str | None = None) -> str:
    """Call fn(); a GenfwError (one line, mentioning `match`) is clean, success is silent."""
    try:
        fn()
    except GenfwError as exc:
        msg = str(exc)
        if "\n" in msg.strip() or (match and match.lower() not in msg.lower()):
            return record(label, "silent", f"unhelpful error: {msg!r}")
        return record(label, "clean")
    except Exception:  # noqa: BLE001 - classifying escapes is the point
        return record(label, "traceback", tb.format_exc(limit=3))
    return record(label, "silent", "accepted")


def expect_cli_error(label: str, result, match: str | None = None) -> str:
    """A CliRunner result: exit 2 with an error line and no traceback is clean."""
    out = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return record(label, "traceback", "".join(tb.format_exception(result.exception))[-600:])
    if "Traceback" in out:
        return record(label, "traceback", out[-600:])
    if result.exit_code == 0:
        return record(label, "silent", f"exit 0: {out[-300:]!r}")
    errors = [ln for ln in out.splitlines() if ln.lower().startswith("error")]
    if result.exit_code != 2 or not errors or (match and match.lower() not in out.lower()):
        return record(label, "silent", f"exit {result.exit_code}: {out[-300:]!r}")
    return record(label, "clean")


def assert_clean(outcomes: list[str]) -> None:
    bad = [f for f in FAILURES if f.split(":")[0] in ("traceback", "silent")]
    assert all(o == "clean" for o in outcomes), "\n".join(bad[-10:])


def summary_line() -> str:
    return (f"fault injection: tried {COUNTS['tried']}, clean {COUNTS['clean']}, "
            f"traceback {COUNTS['traceback']}, silent {COUNTS['silent']}")
