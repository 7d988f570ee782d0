"""``backend bench ehm``: our EHM forward against ``smplx.SMPLX`` on the same model files.

Both run on synthetic files in the real SMPL-X layout (10,475 vertices, 400 shape components,
486 pose correctives), with 10 betas and 10 expressions (the ``smplx`` package's defaults),
float32, the same random parameters, in one process. Also times the smplx+flame (GUAVA EHM)
variant, which has no reference implementation to compare with.
"""

from __future__ import annotations

import shutil
import tempfile

import torch

from ..body.build.smplx_asset import build_smplx_asset
from ..body.build.synthetic_files import write_synthetic_files
from ..body.model import BodyModel
from ..paths import pear_home
from .timing import median_seconds

BATCHES = (1, 64)


def _random_params(batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    def randn(*shape: int, scale: float) -> torch.Tensor:
        return torch.randn(batch, *shape, generator=generator) * scale

    return {
        "betas": randn(10, scale=1.0), "expression": randn(10, scale=1.0),
        "global_orient": randn(3, scale=0.5), "body_pose": randn(63, scale=0.3),
        "left_hand_pose": randn(45, scale=0.3), "right_hand_pose": randn(45, scale=0.3),
        "jaw_pose": randn(3, scale=0.2), "leye_pose": randn(3, scale=0.2),
        "reye_pose": randn(3, scale=0.2), "transl": randn(3, scale=1.0),
    }


def _ours(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours = {k: v for k, v in params.items() if k not in ("leye_pose", "reye_pose")}
    ours["eye_pose"] = torch.cat([params["leye_pose"], params["reye_pose"]], dim=1)
    return ours


def run_ehm_bench(repeats: int = 20, progress: bool = True) -> dict:
    try:
        import smplx
    except ImportError as exc:  # a dev dependency: the reference, not part of the product
        raise SystemExit("backend bench ehm needs the reference package: "
                         "pip install smplx==0.1.28 (the project's [dev] extra)") from exc

    workdir = tempfile.mkdtemp(prefix="bench-ehm-", dir=pear_home())
    try:
        if progress:
            print("writing synthetic SMPL-X/FLAME files ...", flush=True)
        files = write_synthetic_files(workdir, shape_components=400)
        ours = BodyModel(build_smplx_asset(files.smplx, num_betas=10, num_expression=10))
        ehm = BodyModel(build_smplx_asset(
            files.smplx, flame_path=files.flame, correspondence_path=files.correspondence,
            eyelids_path=files.eyelids))
        reference = smplx.SMPLX(str(files.smplx), num_betas=10, num_expression_coeffs=10,
                                use_pca=False, flat_hand_mean=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    generator = torch.Generator().manual_seed(0)
    result: dict = {"threads": torch.get_num_threads(), "vertices": 10475, "betas": 10,
                    "expression": 10, "dtype": "float32"}
    with torch.inference_mode():
        params = _random_params(64, generator)
        mine, theirs = ours(_ours(params)), reference(**params)
        result["max_abs_diff_vs_smplx"] = max(
            (mine.vertices - theirs.vertices).abs().max().item(),
            (mine.joints - theirs.joints[:, :55]).abs().max().item(),
        )
        for batch in BATCHES:
            params = _random_params(batch, generator)
            ehm_params = {k: v for k, v in _ours(params).items() if k in ehm.spec
                          and v.shape[1:] == ehm.default_params()[k].flatten(1).shape[1:]}
            runs = {
                "ours": lambda p=params: ours(_ours(p)),
                "smplx": lambda p=params: reference(**p),
                "ours_ehm": lambda p=ehm_params: ehm(p),
            }
            timings = {name: median_seconds(run, repeats) for name, run in runs.items()}
            for name, seconds in timings.items():
                result[f"{name}_ms_b{batch}"] = round(1000 * seconds / batch, 4)
            if progress:
                print(f"batch {batch}: " + ", ".join(
                    f"{k} {result[f'{k}_ms_b{batch}']} ms/frame" for k in timings), flush=True)
    result["speedup_vs_smplx_b64"] = round(result["smplx_ms_b64"] / result["ours_ms_b64"], 3)
    return result
