"""The learning rate that follows the batch: the spec states the rate it was tuned at and at which
effective batch; the rendered value is rescaled to the effective batch the run really has.

The memo's rule of thumb is `new_lr = old_lr * sqrt(new_batch / old_batch)` (1e-3 is stable up to a
batch of about 4). Moving a setup between GPUs changes the batch, and a rate left behind is the most
common silent mistake of such a move, so the derivation is data (`Derived`), printed by `check`,
`render` and `--dry-run`, and compared on resume. A spec without `tuned_at_batch` keeps its rate as
written: specs written before this existed render exactly what they rendered then.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from fplora.spec.models import Spec

SIGNIFICANT = 6  # digits kept in the rendered rate: config.toml stays readable (5e-6 relative at most)


@dataclass(frozen=True)
class Derived:
    """The rate to render and how it came about."""

    value: float
    written: float
    tuned_at: int | None
    effective: int | None
    rule: str

    @property
    def scaled(self) -> bool:
        return self.tuned_at is not None and self.value != self.written

    def text(self) -> str:
        """`learning_rate 1e-3 tuned at batch 4 → 2e-3 at effective batch 16 (sqrt)`."""
        if self.tuned_at is None:
            return f"learning_rate {number(self.written)} as written (no tuned_at_batch)"
        if self.effective is None:
            return (
                f"learning_rate {number(self.written)} tuned at batch {self.tuned_at}, used as written"
                " (the datasets' batch sizes differ: no one effective batch to scale to)"
            )
        if self.effective == self.tuned_at or self.rule == "none":
            why = "rule none" if self.rule == "none" else "the same batch"
            return (
                f"learning_rate {number(self.written)} tuned at batch {self.tuned_at}, used as is at"
                f" effective batch {self.effective} ({why})"
            )
        return (
            f"learning_rate {number(self.written)} tuned at batch {self.tuned_at} → {number(self.value)}"
            f" at effective batch {self.effective} ({self.rule})"
        )


def factor(rule: str, effective: int, tuned_at: int) -> float:
    """How much the rate grows from `tuned_at` to `effective` samples per step."""
    if rule == "sqrt":
        return math.sqrt(effective / tuned_at)
    if rule == "linear":
        return effective / tuned_at
    return 1.0


def rounded(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}")


def derive(spec: Spec) -> Derived:
    """The learning rate to render for `spec` (its batch settings already final: a GPU preset has
    been applied). Datasets with different batch sizes have no one effective batch: the rate is then
    used as written, and `unscaled` says so."""
    optimizer = spec.train.optimizer
    written, tuned_at, effective = optimizer.learning_rate, optimizer.tuned_at_batch, spec.effective_batch()
    if tuned_at is None or effective is None:
        return Derived(written, written, tuned_at, effective, optimizer.lr_rule)
    value = rounded(written * factor(optimizer.lr_rule, effective, tuned_at))
    return Derived(value, written, tuned_at, effective, optimizer.lr_rule)


def number(value: float) -> str:
    """A rate as people write it: `1e-3`, `1.414e-3`, `0.05`."""
    if value == 0 or 0.01 <= abs(value) < 1e4:
        return f"{value:.4g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


MEMO_RATE, MEMO_BATCH = 1e-3, 4
"""The memo's rule of thumb: 1e-3 is stable up to an effective batch of about 4, scaled by the square
root of the batch above it (2e-3 at 16)."""
PLAUSIBLE = (1e-5, 1e-2)
"""Rates outside this range (a hundredth to ten times the memo's) are warned about: a typo (`1e3`,
`10`) trains to NaN in minutes, a tiny rate trains nothing, and either costs a day of GPU time."""
ADAPTIVE = ("prodigy", "dadapt", "dadaptation")
"""Optimizers that find their own step size and take learning_rate 1.0 by convention."""


def memo_rate(batch: int | None) -> float:
    """The memo's learning rate at `batch` samples per step."""
    batch = batch or MEMO_BATCH
    return MEMO_RATE * math.sqrt(max(batch, MEMO_BATCH) / MEMO_BATCH)


def option_true(args: list[str], name: str) -> bool | None:
    """`name=True/False` in an optimizer's `key=value` args (musubi-tuner literal_evals them); None
    where the args do not set it."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key.strip() == name:
            return value.strip() not in ("False", "0", "None", "false")
    return None


def relative_step(spec: Spec) -> bool:
    """Whether musubi-tuner runs Adafactor with its own relative step size, which ignores the
    learning rate (it becomes the logged initial_lr: training/trainer_base.py:190-207): relative_step
    unless the args turn it off, or warmup_init, which turns it back on."""
    optimizer = spec.train.optimizer
    if optimizer.type.lower() != "adafactor":
        return False
    return option_true(optimizer.args, "relative_step") is not False or bool(
        option_true(optimizer.args, "warmup_init")
    )


def implausible(spec: Spec) -> tuple[str, str, str] | None:
    """(severity, message, fix) for a learning rate far outside what LoRA training uses: an error
    from 1 up (no optimizer but the adaptive ones trains at that), else a warning outside
    `PLAUSIBLE`. None for an optimizer that sets its own step size: the adaptive ones, and Adafactor
    with relative_step, which does not use the rate at all."""
    optimizer = spec.train.optimizer
    if any(name in optimizer.type.lower() for name in ADAPTIVE) or relative_step(spec):
        return None
    derived = derive(spec)
    rate = derived.value
    low, high = PLAUSIBLE
    if low <= rate <= high:
        return None
    batch = spec.effective_batch()
    memo = memo_rate(batch)
    at = f" at effective batch {batch}" if batch else ""
    said = number(rate) if not derived.scaled else f"{number(rate)} (scaled from {number(derived.written)})"
    direction = "far above" if rate > high else "far below"
    message = f"{said} is {direction} the range LoRA training uses ({number(low)} to {number(high)})"
    fix = (
        f"did you mean {number(memo)}? (the house rule of thumb{at}: 1e-3 up to batch 4,"
        " × sqrt(batch / 4) above)"
    )
    return ("error" if rate >= 1 else "warning"), message, fix


def findings(spec: Spec) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """(key path, message, fix) for a learning rate of 1 or more (`learning_rate: 10`: see
    `implausible`)."""
    found = implausible(spec)
    if found is not None and found[0] == "error":
        yield ("train", "optimizer", "learning_rate"), found[1], found[2]


def unscaled(spec: Spec) -> tuple[str, str] | None:
    """(message, fix) for a `tuned_at_batch` that cannot be followed: a warning, not a refusal. A
    spec whose datasets have different batch sizes runs (musubi-tuner takes each step's batch from
    one dataset); only its rate is not rescaled, and a base's `tuned_at_batch` should not stop it."""
    optimizer = spec.train.optimizer
    if optimizer.tuned_at_batch is None or spec.effective_batch() is not None:
        return None
    sizes = sorted({spec.dataset_value(i, "batch_size") for i in range(len(spec.datasets))})
    return (
        f"the datasets have different batch sizes ({', '.join(map(str, sizes))}), so there is no one"
        f" effective batch to scale to: learning_rate {number(optimizer.learning_rate)} is used as"
        " written",
        "give every dataset the same batch_size to have it rescaled, or set tuned_at_batch: null to"
        " say the rate is meant as written",
    )
