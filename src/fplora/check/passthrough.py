"""Files named by pass-through options (`musubi.config.network_weights`, ...) must exist.

fplora renders these options verbatim; musubi-tuner opens them only after loading the models, so a
typo would cost minutes of GPU time. Relative paths are read as musubi-tuner reads them: from the
directory the command runs in.

A LoRA to start from (`network_weights`) must also have the spec's rank and alpha. musubi-tuner builds
the network from the spec's `network_dim`/`network_alpha` and then loads the file into it
(`load_state_dict(..., False)`, networks/lora.py:715): another rank stops training on a size mismatch
after the models are loaded; another alpha loads silently into the `alpha` buffer while the scale
stays the spec's (networks/lora.py:94-95), so the LoRA trains at one scale and is saved with an alpha
that makes every later user apply another.
"""

from __future__ import annotations

from pathlib import Path

from fplora.musubi.names import LORA_NETWORK_MODULE, PASS_THROUGH_INPUTS
from fplora.problems import Problem, display_path
from fplora.safetensors import lora_rank_alpha
from fplora.spec.models import Spec


def check_pass_through_files(spec: Spec) -> list[Problem]:
    problems = []
    for section, keys in PASS_THROUGH_INPUTS.items():
        options = getattr(spec.musubi, section)
        for key in keys:
            value = options.get(key)
            values = value if isinstance(value, list) else [value]
            for item in values:
                if not isinstance(item, str) or not item:
                    continue
                path = Path(item).expanduser()
                if not path.exists():
                    problems.append(
                        spec.problem(
                            ("musubi", section, key),
                            f"{display_path(path)} not found",
                            "check the path (relative paths start where fplora runs)",
                        )
                    )
                elif section == "config" and key == "network_weights":
                    problems.extend(_network_weights(spec, path))
    return problems


def _shown(values: set[int] | set[float]) -> str:
    return "/".join(f"{value:g}" for value in sorted(values))


def _network_weights(spec: Spec, path: Path) -> list[Problem]:
    """The starting LoRA's rank and alpha against the spec's (musubi-tuner's own LoRA module only)."""
    network = spec.train.network
    found = lora_rank_alpha(path) if network.module == LORA_NETWORK_MODULE else None
    if found is None:
        return []
    ranks, alphas = found
    if ranks == {network.dim} and (not alphas or alphas == {float(network.alpha)}):
        return []
    has = f"dim {_shown(ranks)}" + (f", alpha {_shown(alphas)}" if alphas else "")
    fix = []
    if len(ranks) == 1 and ranks != {network.dim}:
        fix.append(f"train.network.dim: {next(iter(ranks))}")
    if len(alphas) == 1 and alphas != {float(network.alpha)}:
        fix.append(f"train.network.alpha: {next(iter(alphas)):g}")
    why = (
        "musubi-tuner would stop on the size mismatch after loading the models"
        if ranks != {network.dim}
        else "musubi-tuner would train at the spec's scale and save the file's alpha, so the LoRA"
        " would be applied at another strength than it was trained at"
    )
    return [
        spec.problem(
            ("musubi", "config", "network_weights"),
            f"{display_path(path)} is a LoRA of {has}; the spec trains dim {network.dim}, alpha"
            f" {network.alpha:g}: {why}",
            f"set {' and '.join(fix)}" if fix else "start from a LoRA of one rank and alpha",
        )
    ]
