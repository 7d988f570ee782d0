"""What the add-on shares with the backend, so the two cannot drift apart: the conventions
(camera axes, the default body model, how many people are numbered, the default address),
the footage-listing rules (which files are frames, in which order) and the errors (one
``FootageError`` whether the add-on or ``backend fit`` refuses the footage).

The built extension carries copies of these dependency-free backend modules under
``vendor/`` (``scripts/build_extension.py``); run from the repository (tests, ``backend
bake``) the installed backend package provides them.
"""

try:
    from .vendor.backend import conventions, errors, footage_files  # noqa: F401  (re-exported)
except ImportError:
    from backend import conventions, errors, footage_files  # noqa: F401  (re-exported)
