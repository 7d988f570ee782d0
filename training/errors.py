"""Errors of training runs, in the project's kinds (``backend.errors``)."""

from __future__ import annotations

from backend.errors import InputError


class TrainingDataError(InputError):
    """Training data that is missing, empty or unreadable: names the file and what to do."""


class TrainingDiverged(InputError):
    """A loss that is not finite: names the step, the terms and the samples of the batch;
    the last good checkpoint is kept."""
