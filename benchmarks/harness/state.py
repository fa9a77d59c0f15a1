"""What every stage shares: the paths and fixed settings of the run, the run's Config, and the
three objects a command fills as it goes (CFG, GPU, SUMMARY).

Modules read them as `state.CFG` at call time, never `from harness.state import CFG`: a driver sets
them once it has parsed its options (and gpu_matrix.py points REPO/SRC at a committed snapshot).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.asserts import Checks
    from harness.proc import GpuMon

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "benchmarks" / "gpu_setup"  # the scripts that install musubi-tuner and make models and data
WHL3 = REPO / ".whl3"  # fplora's own dependencies for the GPU image (benchmarks/gpu_setup/prepare.sh)
SRC = REPO / "src"  # fplora's source; benchmarks/gpu_matrix.py points it at a committed snapshot
PROJECT = "fpe2e"
WIDTH, HEIGHT = 512, 768
NETWORK_DIM = 32
INFER_PROMPTS = 2
MODEL_FILES = (
    *(
        f"diffusion_models/FramePackI2V_HY/diffusion_pytorch_model-{k:05d}-of-00003.safetensors"
        for k in (1, 2, 3)
    ),
    "vae/diffusion_pytorch_model.safetensors",
    *(f"text_encoder/model-{k:05d}-of-00004.safetensors" for k in (1, 2, 3, 4)),
    "text_encoder_2/model.safetensors",
    "image_encoder/model.safetensors",
)
FAKE_STEP_S, FAKE_SAMPLE_S = 0.05, 0.15  # --local-fake: seconds per training step and per sample
PACK_MARGIN = 15  # seconds kept for packing $OUT after the last stage


@dataclass
class Config:
    root: Path
    models: Path
    out: Path
    deadline: float
    gpus: int
    gpus_seen: int
    e2e_batch: int
    e2e_swap: int
    timing_steps: int
    train2_steps: int
    records: int
    local: str | None  # None (GPU), "dry" or "fake"
    t0: float = field(default_factory=time.time)
    width: int = WIDTH  # the dataset's images and the specs' resolution (--shape)
    height: int = HEIGHT
    controls: int = 2  # control images per record (--controls): clean_indices [0, 10] or [0]

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def jsonl(self) -> Path:
        return self.data / "metadata-v1.jsonl"

    @property
    def cache(self) -> Path:
        return self.root / "cache" / "v1"

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def marks(self) -> Path:
        return self.root / "marks"

    @property
    def g_version(self) -> str:
        return f"g{self.gpus}"

    def spec(self, version: str) -> Path:
        return self.configs / f"{version}.yaml"

    def output_name(self, version: str) -> str:
        return f"{PROJECT}-{version}"

    def elapsed(self) -> float:
        return time.time() - self.t0

    def left(self) -> float:
        return self.deadline - self.elapsed()


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Stage:
    """One stage: what it runs (filling its summary entry and asserts), the seconds it needs on an H100
    (it is not started with fewer left before the deadline; a callable when it depends on the options),
    and whether a warm machine still holds its outputs (then the `STAGE?` form skips it)."""

    run: Callable[[dict[str, Any], Checks], None]
    cost: float | Callable[[], float]
    done: Callable[[], bool] = _never


CFG: Config  # set by the driver's main
SUMMARY: dict[str, Any] = {"stages": []}
GPU: GpuMon | None = None  # nvidia-smi sampling, None without a GPU
