"""Training configurations: one dataclass schema, loaded from TOML or YAML files
(``training/configs/``), any field overridable from the command line (``--set optim.lr=1e-4``).

An unknown section or field, or a value of the wrong type, is an ``InputError`` naming the file,
the field and what it accepts. Torch-free, so ``pear-train --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from backend.conventions import DEFAULT_ASSET_ID
from backend.errors import InputError

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(InputError):
    """A configuration file or override that does not fit the schema."""


@dataclass
class ModelConfig:
    backbone: str = "vit_b"  # backend.regressor.vit.CONFIGS: PEAR uses ViT-B/16
    head_dim: int = 512
    head_depth: int = 6
    head_heads: int = 8
    iterations: int = 1
    pretrained: str = ""  # a local ViT/ViTPose backbone file; "" = from scratch


@dataclass
class DataConfig:
    asset: str = DEFAULT_ASSET_ID
    train: list[str] = field(default_factory=list)  # shard folders or dataset specs
    val: list[str] = field(default_factory=list)
    mixture: dict[str, float] = field(default_factory=dict)  # source name -> sampling weight
    workers: int = 0  # loader processes per training process
    augment: bool = True
    backgrounds: str = ""  # a folder of photos showing nobody; "" = procedural backgrounds
    # The user's SMPL file (.npz): with an SMPL-X asset, Eq. 4's offset makes mmhuman3d's SMPL
    # poses labels; "" = those datasets give keypoints only.
    smpl_model: str = ""


@dataclass
class OptimConfig:
    batch_size: int = 40  # per process (PEAR: 40 x 8 GPUs = 320)
    steps: int = 200_000
    lr: float = 1e-5  # at reference_batch; scaled linearly with the global batch
    reference_batch: int = 320
    weight_decay: float = 1e-4
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 500
    final_lr_fraction: float = 0.01  # cosine decay down to lr * this
    grad_clip: float = 1.0
    bf16_on_cuda: bool = True


@dataclass
class LossConfig:
    """Weights of PEAR's Eq. 1-3 terms (HMR2's for the body and keypoints)."""

    kp3d: float = 0.05
    kp2d: float = 0.01
    global_orient: float = 0.001
    body_pose: float = 0.001
    hand_pose: float = 0.001
    betas: float = 0.0005
    head_pose: float = 0.001  # jaw and eyes
    head_shape: float = 0.001
    expression: float = 0.001
    eyelids: float = 0.001
    # Heatmaps of the asset's joints drawn from the backbone's tokens (``heatmaps.py``): what a
    # ViTPose-pretrained backbone (PEAR's) already knows, for training from scratch; 0 = off.
    heatmaps: float = 0.0
    heatmap_sigma: float = 4.0  # the Gaussians' width in heatmap cells (4 crop pixels each)
    kp2d_sets: dict[str, float] = field(default_factory=lambda: {
        "joints": 1.0, "mediapipe_pose33": 1.0, "mediapipe_hand_left": 1.0,
        "mediapipe_hand_right": 1.0, "mediapipe_face478": 0.1})


@dataclass
class RunConfig:
    out: str = "runs/stage1"
    seed: int = 0
    log_every: int = 10
    val_every: int = 1000
    val_samples: int = 256  # the first this many of data.val, the same ones every time
    checkpoint_every: int = 1000


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _read(path: Path) -> dict:
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.toml")))
        raise ConfigError(f"{path}: no such config file (the shipped ones, in {CONFIG_DIR}: "
                          f"{known})")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # tomllib/yaml parse errors carry the line
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table of sections")
    return data


def _convert(value, kind, where: str):
    """``value`` as the annotated type ``kind`` (int, float, str, bool, list[str],
    dict[str, float]), or a ConfigError naming ``where``."""
    origin = typing.get_origin(kind)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(kind)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table of names to values, got {value!r}")
        _, item = typing.get_args(kind)
        return {str(k): _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def _section(cls, values: dict, source: str, name: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: [{name}] must be a table of fields, got {values!r}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown} in [{name}]; it takes "
                          f"{sorted(hints)}")
    return cls(**{key: _convert(value, hints[key], f"{source}: {name}.{key}")
                  for key, value in values.items()})


def parse_override(text: str) -> tuple[list[str], object]:
    """``section.field=value`` -> (path, value); the value is read as a TOML value (numbers,
    true/false, "strings", [lists], {tables}), a bare word as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.field=value, e.g. optim.lr=1e-4")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = (),
                schema: type = None) -> typing.Any:
    """The schema's defaults (``TrainConfig``, stage 1's, unless another schema of sections
    is given), then the file's values, then the ``--set`` overrides."""
    schema = schema or TrainConfig
    data = _read(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    for text in overrides:
        keys, value = parse_override(text)
        if len(keys) != 2:
            raise ConfigError(f"--set {text!r}: name a section and a field, e.g. optim.lr")
        data.setdefault(keys[0], {})
        if not isinstance(data[keys[0]], dict):
            raise ConfigError(f"{source}: section {keys[0]!r} is not a table")
        data[keys[0]][keys[1]] = value
    hints = typing.get_type_hints(schema)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; sections are "
                          f"{sorted(hints)}")
    return schema(**{name: _section(hints[name], values, source, name)
                          for name, values in data.items()})


def as_json(config) -> str:
    """The resolved configuration as JSON, for logs and ``pear-train config``."""
    return json.dumps(config.to_dict(), indent=1)

