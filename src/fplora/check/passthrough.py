"""Files named by pass-through options (`musubi.config.network_weights`, ...) must exist.

fplora renders these options verbatim; musubi-tuner opens them only after loading the models, so a
typo would cost minutes of GPU time. Relative paths are read as musubi-tuner reads them: from the
directory the command runs in.

A LoRA to start from (`network_weights`) must also have the spec's rank and alpha. musubi-tuner builds
the network from the spec's `network_dim`/`network_alpha` and then loads the file into it
(`load_state_dict(..., False)`, networks/lora.py:715): another rank stops training on a size mismatch
after the models are loaded; another alpha loads silently into the `alpha` buffer while the scale
stays the spec's (networks/lora.py:94-95), so the LoRA trains at one scale and is saved with an alpha
that makes every later user apply another. Taking the rank from the file instead
(`musubi.config.dim_from_weights`) cannot work at the pinned commit: refused, with the dim and alpha to
write.
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
    return problems + _dim_from_weights(spec)


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


def _dim_from_weights(spec: Spec) -> list[Problem]:
    """`dim_from_weights` cannot work at the pinned musubi-tuner: training passes the flag's value
    to `load_file` as the file to read (training/trainer_base.py:1566-1568), so `true` stops on a
    bool where a path belongs, and a path gets as far as unpacking the network it built as a pair
    (`network, _ = ...`, :1569; `create_arch_network_from_weights` returns the network alone). Either
    way training stops after the models loaded. The spec's dim and alpha, matched to the starting
    LoRA (`_network_weights`), do what the flag means to."""
    if not spec.musubi.config.get("dim_from_weights"):
        return []
    fix = "remove it and give train.network.dim and train.network.alpha the starting LoRA's rank and alpha"
    start = spec.musubi.config.get("network_weights")
    path = Path(start).expanduser() if isinstance(start, str) and start else None
    found = lora_rank_alpha(path) if path is not None else None
    if path is not None and found is not None and len(found[0]) == 1 and len(found[1]) <= 1:
        (rank,), alphas = found
        alpha = f" and train.network.alpha: {next(iter(alphas)):g}" if alphas else ""
        fix = f"remove it and set train.network.dim: {rank}{alpha} ({display_path(path)}'s own)"
    return [
        spec.problem(
            ("musubi", "config", "dim_from_weights"),
            "musubi-tuner cannot take it: training reads the flag's value as the LoRA file to load"
            " (true is no file name; a path then fails building the network), and stops after the"
            " models loaded",
            fix,
        )
    ]
