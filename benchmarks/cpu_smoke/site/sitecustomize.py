"""Installs the stand-in models of `fplora rehearse` (`src/fplora/worker/rehearse_standins.py`) in
every Python that run.sh starts, including the ones `accelerate launch` starts in turn: those are
started exactly as fplora starts them, so the only way in is the environment (this folder on
PYTHONPATH, FPLORA_CPU_SMOKE=1).

The stand-ins are the product's own, loaded from this checkout by file, with two changes for the
smoke's checks:
- fewer blocks (1 double, 2 single, 1 refiner instead of the real 20 + 40 + 2): the smoke checks the
  workers' calls and arithmetic, not module names, and its torch.compile check compiles every block;
- `FPLORA_CPU_SMOKE_VAE_SEED`: the fidelity check's controlled run. musubi-tuner samples the VAE
  posterior from torch's global generator, which torch seeds at random in every process; seeding it
  once when the VAE is loaded, before any image is encoded, gives the sweep worker and a separate
  run the same draws when (and only when) they encode in the same order.

Nothing else is imported up front: the stand-ins' import hook patches the musubi-tuner modules as
they are first imported, so a script binds the stand-ins where it would bind the real models.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

SMALL_DIT = {"num_layers": 1, "num_single_layers": 2, "num_refiner_layers": 1}


def _standins() -> Any:
    path = Path(__file__).resolve().parents[3] / "src" / "fplora" / "worker" / "rehearse_standins.py"
    spec = importlib.util.spec_from_file_location("rehearse_standins", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["rehearse_standins"] = module  # `import rehearse_standins` finds this one
    spec.loader.exec_module(module)
    return module


def _seeded_vae(standins: Any, seed: int) -> None:
    """torch's global generator seeded right after each load of the (stand-in) VAE."""
    name = "musubi_tuner.hunyuan_model.vae"
    before, after = standins.PATCHES[name]

    def seeded(module: Any) -> None:
        if after is not None:
            after(module)
        load = module.load_vae

        def load_vae(*args: Any, **kwargs: Any) -> Any:
            loaded = load(*args, **kwargs)
            import torch

            torch.manual_seed(seed)
            return loaded

        module.load_vae = load_vae

    standins.PATCHES[name] = (before, seeded)


if os.environ.get("FPLORA_CPU_SMOKE") == "1":
    _module = _standins()
    _module.DIT_SHRINK.update(SMALL_DIT)
    if os.environ.get("FPLORA_CPU_SMOKE_VAE_SEED") is not None:
        _seeded_vae(_module, int(os.environ["FPLORA_CPU_SMOKE_VAE_SEED"]))
    _module.install()
