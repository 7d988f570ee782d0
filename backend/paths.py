"""Where the project keeps user data: licensed model files, built assets, checkpoints, caches.

Everything lives under one directory, ``$PEAR_HOME`` (default ``~/.local/share/pear``), so that
nothing the project or its dependencies cache litters the home directory or the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

_DEFAULT_HOME = Path("~/.local/share/pear")

# Cache variables of third-party packages, and the subfolder of PEAR_HOME each one points to.
_CACHE_VARIABLES = {
    "ANNY_CACHE_DIR": "cache/anny",
    "WARP_CACHE_PATH": "cache/warp",
    "TORCH_HOME": "cache/torch",
    "HF_HOME": "cache/huggingface",
    "TORCH_EXTENSIONS_DIR": "cache/torch_extensions",
    "TORCHINDUCTOR_CACHE_DIR": "cache/torchinductor",  # torch.compile's kernels
    "MPLCONFIGDIR": "cache/matplotlib",
    # bpy (read at `import bpy`): preferences, scripts and extensions, else ~/.config/blender;
    # its thumbnails follow XDG_CACHE_HOME, else ~/.cache/thumbnails.
    "BLENDER_USER_RESOURCES": "blender",
    "XDG_CACHE_HOME": "cache/xdg",
}


def pear_home() -> Path:
    """The project's data directory (created on demand)."""
    home = Path(os.environ.get("PEAR_HOME") or _DEFAULT_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def assets_dir() -> Path:
    """Built body-model assets (``<asset_id>.npz``)."""
    path = pear_home() / "assets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir() -> Path:
    """Regressor checkpoints, one folder per body model (``<asset_id>/``)."""
    return pear_home() / "checkpoints"


def priors_dir() -> Path:
    """Pose priors trained here (``backend priors train``), ahead of the shipped ones."""
    return pear_home() / "priors"


def route_caches() -> None:
    """Point the caches of torch, anny, warp, Hugging Face, ... into ``PEAR_HOME``.

    Variables the user already set are left alone.
    """
    home = pear_home()
    for variable, subdir in _CACHE_VARIABLES.items():
        if not os.environ.get(variable):
            os.environ[variable] = str(home / subdir)


def adapters_dir() -> Path:
    """Adapters (``pear-train adapt``) the server offers by name: one folder each."""
    return pear_home() / "adapters"
