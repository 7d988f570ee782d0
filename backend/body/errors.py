"""Typed errors of the body-model package: each names what is wrong and how to fix it."""


class BodyModelError(Exception):
    """Base class of body-model errors."""


class AssetFormatError(BodyModelError, ValueError):
    """An asset file is malformed: names the offending field, what was expected and what was
    found."""


class AssetNotFoundError(BodyModelError, FileNotFoundError):
    """No installed asset with the requested id."""


class ModelFileError(BodyModelError, ValueError):
    """A user-supplied SMPL-X / FLAME / correspondence file is missing or not what was expected."""


class ParameterError(BodyModelError, ValueError):
    """Parameters passed to the body model have the wrong name, shape or batch size."""
