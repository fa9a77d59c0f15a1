"""Timings read from a command's timestamped output: seconds per optimizer step from musubi-tuner's
progress bar, caching and inference times; none of them raises on odd output."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import state
from harness.asserts import Checks
from harness.proc import PROGRESS, Ran

BAR_ELAPSED = re.compile(r"^\s*(?:(\d+):)?(\d+):(\d+)")


BAR_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(s/it|it/s)")


@dataclass
class Render:
    """One redraw of a tqdm bar."""

    n: int
    elapsed: float  # seconds on the bar's own clock, as tqdm computed them when it drew this
    arrived: float  # seconds from process start to when the line reached us (may be late)


def bar_renders(ran: Ran, desc: str = "steps") -> list[Render]:
    """Every redraw of the bar `desc`, in order.

    The arrival time of a `\\r`-ended redraw is not when it was drawn: on the GPU machine the redraws
    reached us only with the next `\\n`-ended line (train, 2 GPUs: steps 1 and 2 "arrived" in the same
    read, 25 s after step 1). So the time is read from the bar itself. musubi-tuner's bar has
    smoothing=0, so its rate is n / elapsed (s/it or it/s, two decimals): elapsed = n x rate is good to
    n x 5 ms, where the mm:ss field is good to 1 s (used only where there is no rate: n = 0)."""
    out: list[Render] = []
    for t, text in ran.lines:
        match = PROGRESS.search(text)
        if not match or match["desc"].strip() != desc or match["post"] is None:
            continue
        n, post = int(match["n"]), match["post"]
        rate = BAR_RATE.search(post)
        clock = BAR_ELAPSED.match(post)
        elapsed: float | None = None
        if n > 0 and rate and float(rate[1]) > 0:
            value = float(rate[1])
            elapsed = n * value if rate[2] == "s/it" else n / value
        elif clock:
            elapsed = int(clock[1] or 0) * 3600 + int(clock[2]) * 60 + int(clock[3])
        if elapsed is not None:
            out.append(Render(n, elapsed, t - ran.t0))
    return out


def mark(ran: Ran, pattern: str, last: bool = False) -> float | None:
    """Seconds from process start to the first (or last) line matching `pattern`."""
    found = [t for t, text in ran.lines if re.search(pattern, text)]
    if not found:
        return None
    return round((found[-1] if last else found[0]) - ran.t0, 3)


def step_timings(ran: Ran, batch: int, processes: int = 1) -> dict[str, Any]:
    """Seconds per optimizer step, from musubi-tuner's `steps` bar; never raises on odd output.

    musubi-tuner resets the bar when step 1 is done (so its clock starts at the end of step 1), then
    per step k: `update(1)` draws k (if 0.1 s have passed since the last draw), then the sample and the
    LoRA/state saves of step k run, then `set_postfix` draws k again (always). With gradient
    accumulation `set_postfix` also draws after every micro-batch, so k is drawn again by each of step
    k+1's micro-batches but the last. The end of step k's sampling and saving is therefore k's second
    draw (its first for step 1, whose update draw falls within 0.1 s of the reset and is not drawn), and
    step k's own compute time is [first draw of k] - [that draw of k-1]; the sampling and saving between
    k's first and second draw is reported apart. A step counts only if k was drawn at least twice (the
    update draw and the postfix draw): with a single draw, the one seen may be the postfix's, after
    sampling and saving, so that interval is left out (listed in `excluded_steps`). Step 1 (from the
    bar's creation, with start-up and sample-at-first) is never counted. No steady step -> no s/step.
    (The first version took k-1's last draw, which with accumulation is one micro-batch before k: on
    the H200 it read 1.03 s for a 15.3-s step of 16 micro-batches.)"""
    out: dict[str, Any] = {}
    renders = [r for r in bar_renders(ran) if r.n >= 1]  # n = 0 draws are on the pre-reset clock
    by_n: dict[int, list[Render]] = {}
    for r in renders:
        by_n.setdefault(r.n, []).append(r)
    out["bar_elapsed_s"] = {str(n): [round(x.elapsed, 2) for x in rs] for n, rs in sorted(by_n.items())}
    if not by_n:
        return {**out, **_tqdm_and_load(ran)}
    # the bar's clock on ours: a draw arrives no earlier than it was drawn, so the earliest
    # (arrival - elapsed) is the reset, i.e. the end of step 1
    zero = min(r.arrived - r.elapsed for r in renders)
    if zero >= 0:  # a raw log has no arrival times
        out["start_to_step1_s"] = round(zero, 3)
    steady: dict[int, float] = {}
    excluded: list[int] = []
    between: dict[str, float] = {}
    for k in sorted(by_n):
        draws = by_n[k]
        if len(draws) >= 2 and k >= 2:
            between[str(k)] = round(draws[1].elapsed - draws[0].elapsed, 2)
        if k < 2:
            continue
        if k - 1 not in by_n or len(draws) < 2:
            excluded.append(k)
            continue
        d = draws[0].elapsed - _saved(by_n, k - 1).elapsed
        if d > 0:
            steady[k] = d
        else:
            excluded.append(k)
    out["sample_and_save_s_after_step"] = between
    if excluded:
        out["excluded_steps"] = excluded
    if steady:
        per = sum(steady.values()) / len(steady)
        out["s_per_step"] = round(per, 3)
        out["s_per_step_each"] = {str(k): round(v, 2) for k, v in steady.items()}
        out["s_per_step_steps"] = f"{','.join(map(str, steady))} (step 1 excluded)"
        out["samples_per_s"] = round(batch * processes / per, 3)
        if state.GPU:
            peaks: dict[str, int] = {}
            for k in steady:
                t0 = ran.t0 + zero + _saved(by_n, k - 1).elapsed
                t1 = ran.t0 + zero + by_n[k][0].elapsed
                for gpu, mib in state.GPU.peaks(t0, t1).items():
                    peaks[gpu] = max(peaks.get(gpu, 0), mib)
            out["gpu_peak_MiB_in_steps"] = peaks
    else:
        out["s_per_step"] = None
    return {**out, **_tqdm_and_load(ran)}


def _saved(by_n: dict[int, list[Render]], k: int) -> Render:
    """The draw of step k that follows its sampling and saving: the postfix draw, which is k's first
    for step 1 (drawn right after the reset, so its update draw is skipped) and its second after that."""
    draws = by_n[k]
    return draws[0] if k == 1 or len(draws) < 2 else draws[1]


def read_log(path: Path) -> Ran:
    """A Ran from a stage log (`logs/<stage>-<n>.log`: seconds from start, then the line) or from a raw
    log (fplora's `<output_name>.log`: no times, `\\r` and `\\n` lines), for `--timings-from`."""
    stamped = re.compile(r"^\s*(\d+\.\d{3}) (.*)$")
    lines: list[tuple[float, str]] = []
    for text in re.split(r"[\r\n]", path.read_text(errors="replace")):
        match = stamped.match(text)
        if match:
            lines.append((float(match[1]), match[2]))
        elif text.strip():
            lines.append((0.0, text))
    end = max((t for t, _ in lines), default=0.0)
    return Ran([], None, 0.0, end, lines, path)


def _tqdm_and_load(ran: Ran) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rates = re.findall(r"(\d+(?:\.\d+)?)(s/it|it/s)", " ".join(t for _, t in ran.lines if "steps:" in t))
    if rates:
        value, unit = float(rates[-1][0]), rates[-1][1]
        if value > 0:  # tqdm's own average since step 1: sampling, saving and the end included
            out["tqdm_last_s_per_it"] = round(value if unit == "s/it" else 1 / value, 3)
    load0, load1 = mark(ran, r"Loading DiT model from"), mark(ran, r"Loaded DiT model from")
    if load0 is not None and load1 is not None and ran.t1 > ran.t0:  # a raw log has no times
        out["dit_load_s"] = round(load1 - load0, 3)
    return out


ITER_BAR = re.compile(r"^(?P<n>\d+)it \[[\d:]+, *(?P<rate>\d+(?:\.\d+)?)(?P<unit>s/it|it/s)")


def iter_bar_s(ran: Ran, t_from: float, t_to: float) -> tuple[int, float] | None:
    """The last redraw of a bar without a total (`4it [00:10,  2.56s/it]`, the caching scripts') drawn
    between two times from process start: (iterations, seconds = n x rate, as tqdm measured them)."""
    found = None
    for t, text in ran.lines:
        match = ITER_BAR.match(text.lstrip())
        if match and t_from <= t - ran.t0 <= t_to and float(match["rate"]) > 0:
            n, rate = int(match["n"]), float(match["rate"])
            found = (n, round(n * rate if match["unit"] == "s/it" else n / rate, 3))
    return found


def cache_timings(ran: Ran, records: int) -> dict[str, Any]:
    """The latent script, then the text-encoder script. Encoding times come from their own bars (one
    iteration = one dataset batch); the rest from the log lines' arrival."""
    out: dict[str, Any] = {"wall_s_per_record": round((ran.t1 - ran.t0) / records, 3)}
    end = round(ran.t1 - ran.t0, 3)
    vae0 = mark(ran, r"Loading VAE model from")
    latent0 = mark(ran, r"Encoding dataset \[0\]")
    te_start = mark(ran, r"Load dataset config from", last=True)
    te0 = mark(ran, r"Encoding with Text Encoders")
    out["start_to_latent_encoding_s"] = latent0
    if vae0 is not None and latent0 is not None:
        out["latent_models_load_s"] = round(latent0 - vae0, 3)
    if latent0 is not None:
        bar = iter_bar_s(ran, latent0, te_start if te_start and te_start > latent0 else end)
        if bar:
            out["latent_encode_s"] = bar[1]
            out["latent_s_per_image"] = round(bar[1] / records, 3)
    if te_start is not None and te0 is not None:
        out["te_models_load_s"] = round(te0 - te_start, 3)
    if te0 is not None:
        bar = iter_bar_s(ran, te0, end)
        if bar:
            out["te_encode_s"] = bar[1]
            out["te_s_per_record"] = round(bar[1] / records, 3)
    return out


def infer_timings(ran: Ran, prompts: int) -> dict[str, Any]:
    """Per generate process (one per multiplier): start-up, then DiT time per image."""
    starts = [t for t, text in ran.lines if "Loading VAE and Image Encoders for batch" in text]
    gen = [t for t, text in ran.lines if "Generating latents for all prompts" in text]
    rel = [t for t, text in ran.lines if "Releasing DiT model from memory" in text]
    loads = [t for t, text in ran.lines if "Loading DiT model for batch generation" in text]
    out: dict[str, Any] = {"processes": len(gen)}
    if gen and rel and len(gen) == len(rel):
        out["dit_s_per_image"] = [round((r - g) / prompts, 3) for g, r in zip(gen, rel, strict=True)]
    if loads and gen and len(loads) == len(gen):
        out["dit_load_s"] = [round(g - s, 3) for s, g in zip(loads, gen, strict=True)]
    if starts and gen and len(starts) == len(gen):
        out["start_to_generate_s"] = [round(g - s, 3) for s, g in zip(starts, gen, strict=True)]
    out["wall_s_per_image"] = round((ran.t1 - ran.t0) / max(1, prompts * max(1, len(gen))), 3)
    launched = [t for t, text in ran.lines if text.startswith("$ ")]  # fplora echoes each command
    if launched:
        ends = [*launched[1:], ran.t1]
        out["process_s"] = [round(b - a, 3) for a, b in zip(launched, ends, strict=True)]
    return out


def guarded(checks: Checks, parse: Any, *args: Any) -> dict[str, Any]:
    """Run a timing parser; if it raises, record that as a failed assert and go on with the stage's
    other asserts (on the GPU machine, a ZeroDivisionError here once skipped every train assert)."""
    try:
        return parse(*args)
    except Exception as exc:
        checks.ok(False, f"{parse.__name__} parses the log", f"{type(exc).__name__}: {exc}")
        return {}
