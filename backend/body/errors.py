"""Typed errors of the body-model package: each names what is wrong and how to fix it."""

from ..errors import InputError, PearError, SetupError


class BodyModelError(PearError):
    """Base class of body-model errors; each subclass is also one of the three kinds."""


class AssetFormatError(BodyModelError, SetupError, ValueError):
    """An asset file is malformed: names the offending field, what was expected and what was
    found."""


class AssetNotFoundError(BodyModelError, SetupError, FileNotFoundError):
    """No installed asset with the requested id."""


class MissingLandmarkSets(BodyModelError, SetupError):
    """A body model without the MediaPipe landmark sets the estimators fit to footage."""


class ModelFileError(BodyModelError, InputError):
    """A user-supplied SMPL-X / FLAME / correspondence file is missing or not what was expected."""


class ParameterError(BodyModelError, InputError):
    """Parameters passed to the body model have the wrong name, shape or batch size."""
