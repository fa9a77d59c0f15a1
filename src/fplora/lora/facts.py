"""What a user of a LoRA must know to get from it what training made: the one-frame settings, the
resolution, the base model, how far it trained and from what. Gathered once, then written into the
file's metadata (`metadata`) and its model card (`lora/card.py`).

musubi-tuner's own metadata (`ss_*`, `modelspec.*`) has none of the one-frame settings, which
inference must match, and its `modelspec.resolution` is a placeholder (1280x720 for FramePack,
`utils/sai_model_spec.py`); fplora writes its own keys under `fplora.` and the real resolution.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fplora import __version__
from fplora.render.prompts import one_frame_modes
from fplora.spec.models import Spec, width_height

BASE_MODELS = {
    "i2v": "lllyasviel/FramePackI2V_HY",
    "f1": "lllyasviel/FramePack_F1_I2V_HY_20250503",
}
"""The Hugging Face repositories of FramePack's two DiTs; which one a spec trained on is read off
its DiT file name (`F1` in it: the F1 model)."""

DEFAULT_LATENT_WINDOW_SIZE = 9  # musubi-tuner's fp_latent_window_size default


def base_model(dit: Path) -> str:
    return BASE_MODELS["f1"] if "f1" in dit.name.lower().replace("-", "_").split("_") else BASE_MODELS["i2v"]


def spec_hash(spec: Spec) -> str:
    """sha256 of the resolved spec as `fplora train` records it in the run's manifest (sorted JSON),
    so that a LoRA can be traced to the spec it was trained with."""
    dump = spec.model_dump(mode="json", by_alias=True)
    return hashlib.sha256(json.dumps(dump, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass
class Facts:
    """Everything the metadata and the card say about one exported checkpoint."""

    name: str  # the export's file stem: <output_name>-step00005000
    output_name: str
    spec_file: str
    spec_sha256: str
    step: int | None
    clean_indices: list[int]
    target_index: int
    no_post: bool
    no_2x: bool
    no_4x: bool
    latent_window_size: int
    inference: str  # the `--of` value
    resolutions: list[tuple[int, int]]
    base_model: str
    dit_file: str
    rank: int
    alpha: float
    musubi_tuner: dict[str, str]
    eval_loss: float | None = None
    eval_untrained: float | None = None
    eval_best: tuple[str, float] | None = None
    eval_trained_on: bool = False  # eval.allow_training_records: the scored records were trained on
    prompts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def control_count(self) -> int:
        return len(self.clean_indices)

    @property
    def resolution(self) -> str:
        """`960x544` (width x height), several joined by `, ` when datasets differ."""
        return ", ".join(f"{w}x{h}" for w, h in self.resolutions)

    def metadata(self, layout: str, *, folded: bool) -> dict[str, str]:
        """The `fplora.*` keys (and the real `modelspec.resolution`) added to the file's metadata."""
        width, height = self.resolutions[0]
        found = {
            "fplora.version": __version__,
            "fplora.layout": layout,
            "fplora.alpha_folded": json.dumps(folded),
            "fplora.spec": self.spec_file,
            "fplora.spec_sha256": self.spec_sha256,
            "fplora.output_name": self.output_name,
            "fplora.global_step": "" if self.step is None else str(self.step),
            "fplora.one_frame.clean_indices": json.dumps(self.clean_indices),
            "fplora.one_frame.target_index": str(self.target_index),
            "fplora.one_frame.no_post": json.dumps(self.no_post),
            "fplora.one_frame.control_count": str(self.control_count),
            "fplora.one_frame.no_2x": json.dumps(self.no_2x),
            "fplora.one_frame.no_4x": json.dumps(self.no_4x),
            "fplora.one_frame.latent_window_size": str(self.latent_window_size),
            "fplora.one_frame.inference": self.inference,
            "fplora.resolution": self.resolution,
            "fplora.base_model": self.base_model,
            "fplora.base_model_file": self.dit_file,
            "fplora.network_dim": str(self.rank),
            "fplora.network_alpha": f"{self.alpha:g}",
            "fplora.musubi_tuner_version": self.musubi_tuner.get("version", ""),
            "fplora.musubi_tuner_commit": self.musubi_tuner.get("commit", ""),
            "modelspec.resolution": f"{width}x{height}",
        }
        if self.eval_loss is not None:
            found["fplora.eval_loss"] = repr(self.eval_loss)
        return found


def one_frame_facts(spec: Spec) -> dict[str, Any]:
    """The spec's one-frame settings and resolutions, as `Facts` takes them."""
    one = spec.one_frame
    sizes = []
    for dataset in spec.datasets:
        size = width_height(dataset.resolution or spec.data.resolution)
        if size not in sizes:
            sizes.append(size)
    return {
        "clean_indices": list(one.clean_indices),
        "target_index": one.target_index,
        "no_post": one.no_post,
        "no_2x": one.no_2x,
        "no_4x": one.no_4x,
        "latent_window_size": one.latent_window_size or DEFAULT_LATENT_WINDOW_SIZE,
        "inference": one_frame_modes(spec),
        "resolutions": sizes,
    }
