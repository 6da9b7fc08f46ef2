"""Two kinds of failure the CLI turns into exit codes (see DESIGN §3).

Raise `UsageError` for bad input or usage (exit 2): missing files, wrong shapes, unknown names.
Raise `VerificationError` when a check the user asked for fails (exit 1): parity, regression.
Messages are one line that names the file/field and says how to fix it.
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad input or usage: the CLI prints `error: <message>` and exits 2."""

    exit_code = 2


class VerificationError(Exception):
    """A verification or regression check failed: the CLI prints the message and exits 1."""

    exit_code = 1
