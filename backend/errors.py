"""The project's errors: one base, three kinds, and the one place that turns them into what a
user sees (a message and an exit code).

- ``SetupError``: the installation or configuration is wrong (a missing or broken model file,
  asset or checkpoint, a server that cannot start as asked). Nothing will work until it is
  fixed, so a batch stops.
- ``InputError``: something the user handed over is wrong (an argument, a result file, a
  message, a parameter array). Fix that input and try again.
- ``ClipError``: this clip cannot be recovered (undecodable footage, nobody in view). A batch
  goes on with the next clip.

Every message names what is wrong and how to fix it. Torch-free and dependency-free: the
Blender extension carries a copy (``scripts/build_extension.py``).
"""

from __future__ import annotations


class PearError(Exception):
    """Base of every error the project raises on purpose."""

    kind = "error"


class SetupError(PearError):
    """The installation or configuration: fix it before anything runs."""

    kind = "set-up error"


class InputError(PearError, ValueError):
    """An argument, file or message the user gave is wrong."""

    kind = "input error"


class ClipError(PearError):
    """One clip cannot be recovered; other clips are unaffected."""

    kind = "clip error"


class FootageError(ClipError, ValueError):
    """Footage that cannot be opened or decoded: says which file or frame and what to do."""


# The command line's exit codes, one per kind (2 is also argparse's for a malformed command).
EXIT_CODES: dict[type[PearError], int] = {InputError: 2, SetupError: 3, ClipError: 4}
EXIT_BATCH_PARTLY_FAILED = 1  # `backend bake`: some clips failed, the others were baked
EXIT_BUG = 70  # an exception the project did not mean to raise (sysexits' EX_SOFTWARE)


def exit_code(error: PearError) -> int:
    """The command line's exit code for an error that ended a command."""
    return next((code for kind, code in EXIT_CODES.items() if isinstance(error, kind)), 2)


def describe(error: PearError, about: str | None = None) -> str:
    """The one line a user reads: ``error: <message>``, or ``error: <about>: <message>`` to
    say which of several things (a batch's clip) it is about, unless the message names it."""
    message = str(error)
    return f"error: {about}: {message}" if about and about not in message else f"error: {message}"


def describe_bug(error: BaseException) -> str:
    """The line under the traceback of an exception no check anticipated."""
    return (f"error: this is a bug in PEAR ({type(error).__name__}), not something you did: "
            "please report it with the traceback above")
