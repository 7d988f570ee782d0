"""The backend's Python client, as the add-on imports it.

The built extension carries a copy of the backend's torch-free client modules under
``vendor/`` (``scripts/build_extension.py``); run from the repository (tests, ``backend
bake``) the installed backend package provides them.
"""

try:
    from .vendor.backend.server.client import (  # noqa: F401  (re-exported)
        BackendError,
        BackendTimeout,
        Client,
        VersionMismatch,
    )
except ImportError:
    from backend.server.client import (  # noqa: F401  (re-exported)
        BackendError,
        BackendTimeout,
        Client,
        VersionMismatch,
    )
