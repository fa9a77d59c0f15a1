"""`fplora dataset stats [SPEC]`: what the datasets hold, against the buckets, before any GPU time.

Per dataset: records; image sizes and aspect ratios against the bucket resolution (an image whose
orientation is the opposite of the bucket's, or smaller than it, is trained cropped or upscaled);
caption lengths, empty and duplicate captions; near-duplicate targets by a 64-bit difference hash
(dHash: the image shrunk to 9x8 greys, one bit per left/right comparison; Pillow only) within
`NEAR` bits, a 4x4 colour thumbnail within `COLOUR` (dHash alone sees a red and a blue square on
white as one picture) and a 64-bin colour histogram within `RECOLOUR` (a character recoloured on a
white background moves the 4x4 thumbnail's mean too little: a red and an orange square filling 15 %
of the frame differ by 8 of 255 there, yet every pixel of the square changed colour); records times
repeats, and the optimizer steps one epoch takes.
`--plot FILE` draws the sizes as a PNG histogram (the `plot` extra, matplotlib).

Near duplicates are found without comparing every pair: the 64 bits are cut into NEAR + 1 bands,
and two hashes within NEAR bits agree on at least one whole band (pigeonhole), so only targets that
share a band are compared.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from fplora.datasets.records import RecordCache, Records
from fplora.jobs.estimate import steps_per_epoch
from fplora.jobs.plot import output_path, pyplot
from fplora.plan import Plan
from fplora.problems import UserError, display_path, plural
from fplora.render.files import RenderedPaths
from fplora.spec.models import Spec, width_height
from fplora.writable import write_problem

NEAR = 4  # bits of 64: what a re-encode, a resize or a small crop changes
COLOUR = 12.0  # mean difference of the 4x4 thumbnails' channels (of 255): a recolour is no duplicate
RECOLOUR = 0.1  # L1 distance of the colour histograms (0 to 2): 5 % of the pixels in another colour
LEVELS = 4  # per channel: 4 x 4 x 4 histogram bins
BANDS = NEAR + 1
SHOWN = 5

Say = Callable[[str], None]


@dataclass(frozen=True)
class Print:
    """A target's 64-bit difference hash (structure) and its 4x4 colour thumbnail (colour)."""

    bits: int
    colours: bytes
    histogram: tuple[float, ...]  # share of a 32x32 thumbnail's pixels in each of LEVELS**3 colours


def fingerprint(path: Path) -> Print | None:
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError):
        return None
    grey = rgb.convert("L").resize((9, 8), Image.Resampling.BILINEAR).tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (grey[row * 9 + col] > grey[row * 9 + col + 1])
    thumb = rgb.resize((32, 32), Image.Resampling.BOX)  # one pass over the pixels for both colour prints
    return Print(bits, thumb.resize((4, 4), Image.Resampling.BOX).tobytes(), _histogram(thumb))


def _histogram(thumb: Image.Image) -> tuple[float, ...]:
    """The colours of a box-filtered thumbnail (the filter averages away re-encoding noise), each
    channel cut into LEVELS, as shares of the pixels."""
    import numpy as np

    levels = np.asarray(thumb).reshape(-1, 3) // (256 // LEVELS)
    bins = (levels[:, 0].astype(np.int64) * LEVELS + levels[:, 1]) * LEVELS + levels[:, 2]
    counts = np.bincount(bins, minlength=LEVELS**3)
    return tuple(float(c) / len(bins) for c in counts)


def _colour_distance(one: bytes, other: bytes) -> float:
    return sum(abs(a - b) for a, b in zip(one, other, strict=True)) / len(one)


def _recoloured(one: Print, other: Print) -> bool:
    """Another colour for more than RECOLOUR of the picture, or for its thumbnail's mean."""
    moved = sum(abs(a - b) for a, b in zip(one.histogram, other.histogram, strict=True))
    return moved > RECOLOUR or _colour_distance(one.colours, other.colours) > COLOUR


def near_duplicates(prints: dict[Path, Print]) -> list[tuple[Path, Path, int]]:
    """Pairs within NEAR bits of structure and COLOUR of colour, each once, closest first."""
    width = 64 // BANDS + 1
    buckets: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for path, value in prints.items():
        for band in range(BANDS):
            buckets[(band, (value.bits >> (band * width)) & ((1 << width) - 1))].append(path)
    pairs: dict[tuple[Path, Path], int] = {}
    for members in buckets.values():
        for i, first in enumerate(members):
            for second in members[i + 1 :]:
                one, other = prints[first], prints[second]
                distance = (one.bits ^ other.bits).bit_count()
                if distance <= NEAR and not _recoloured(one, other):
                    pairs[(first, second)] = distance
    return sorted(((a, b, d) for (a, b), d in pairs.items()), key=lambda p: (p[2], str(p[0])))


@dataclass
class Sizes:
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    unreadable: list[Path] = field(default_factory=list)


def _sizes(records: Records) -> Sizes:
    found = Sizes()
    for record in records.items:
        if record.image is None:
            continue
        try:
            with Image.open(record.image) as image:
                found.sizes[image.size] += 1
        except (OSError, ValueError):
            found.unreadable.append(record.image)
    return found


def _ratio(size: tuple[int, int]) -> float:
    return size[0] / size[1]


def dataset_lines(spec: Spec, index: int, records: Records) -> tuple[list[str], Sizes]:
    bucket = width_height(spec.dataset_value(index, "resolution"))
    repeats = spec.dataset_value(index, "num_repeats")
    lines = [
        f"dataset {index}: {display_path(records.jsonl)}: {plural(len(records.items), 'record')}"
        f" × {plural(repeats, 'repeat')}"
        f" = {plural(len(records.items) * repeats, 'sample')} per epoch"
    ]
    sizes = _sizes(records)
    common = ", ".join(f"{w}x{h} ×{n}" for (w, h), n in sizes.sizes.most_common(SHOWN))
    more = f" and {len(sizes.sizes) - SHOWN} other sizes" if len(sizes.sizes) > SHOWN else ""
    lines.append(f"  target sizes: {common}{more}")
    ratios = Counter(round(_ratio(s), 2) for s in sizes.sizes.elements())
    bucket_ratio = round(_ratio(bucket), 2)
    shown = ", ".join(f"{r:.2f} ×{n}" for r, n in sorted(ratios.items(), key=lambda x: -x[1])[:SHOWN])
    lines.append(f"  aspect ratios (w/h): {shown}; bucket {bucket[0]}x{bucket[1]} is {bucket_ratio:.2f}")
    opposite = sum(n for s, n in sizes.sizes.items() if (s[0] - s[1]) * (bucket[0] - bucket[1]) < 0)
    smaller = sum(n for s, n in sizes.sizes.items() if s[0] * s[1] < bucket[0] * bucket[1])
    if opposite:
        lines.append(
            f"  {plural(opposite, 'target')} {'is' if opposite == 1 else 'are'}"
            f" {'portrait' if bucket[0] > bucket[1] else 'landscape'} while the"
            " bucket is not: trained at another bucket shape or cropped"
        )
    if smaller:
        lines.append(
            f"  {plural(smaller, 'target')} {'has' if smaller == 1 else 'have'} fewer pixels than the bucket:"
            " upscaled (unless bucket_no_upscale)"
        )
    if sizes.unreadable:
        lines.append(
            f"  {plural(len(sizes.unreadable), 'target')} cannot be read"
            f" (e.g. {display_path(sizes.unreadable[0])}):"
            " run `fplora check`"
        )
    captions = [r.caption or "" for r in records.items]
    if captions:
        chars = [len(c) for c in captions]
        words = [len(c.split()) for c in captions]
        lines.append(
            f"  captions: {min(chars)}–{max(chars)} characters (median {statistics.median(chars):g}),"
            f" {min(words)}–{max(words)} words (median {statistics.median(words):g})"
        )
    empty = sum(1 for c in captions if not c.strip())
    if empty:
        lines.append(f"  {plural(empty, 'record')} {'has' if empty == 1 else 'have'} an empty caption")
    repeated = [(c, n) for c, n in Counter(captions).most_common() if n > 1 and c.strip()]
    if repeated:
        first, count = repeated[0]
        lines.append(
            f"  {sum(n for _, n in repeated)} records share {plural(len(repeated), 'caption')}"
            f" (most: ×{count} {first[:60]!r})"
        )
    prints = {
        r.image: p for r in records.items if r.image is not None and (p := fingerprint(r.image)) is not None
    }
    pairs = near_duplicates(prints)
    if pairs:
        lines.append(
            f"  {plural(len(pairs), 'pair')} of near-duplicate targets (dHash within {NEAR} of 64 bits):"
        )
        for one, other, distance in pairs[:SHOWN]:
            lines.append(f"    {display_path(one)} ~ {display_path(other)} ({distance} bits)")
    else:
        lines.append("  no near-duplicate targets")
    return lines, sizes


def stats(spec: Spec, *, plot: Path | None, say: Say) -> int:
    records = RecordCache(spec)
    all_sizes: dict[int, Sizes] = {}
    for index in range(len(spec.datasets)):
        found = records(index)
        if found.problems and not found.items:
            raise UserError(found.problems)
        lines, all_sizes[index] = dataset_lines(spec, index, found)
        for line in lines:
            say(line)
    per_epoch = steps_per_epoch(Plan(spec, RenderedPaths(spec.render_dir), records=records))
    if per_epoch is not None:
        say(
            f"one epoch: {plural(per_epoch, 'optimizer step')}"
            f" (effective batch {spec.effective_batch() or 'per dataset'})"
        )
    if plot is not None:
        # as `fplora plot --out`: a folder gets the file inside it, a name without a suffix gets .png
        # (matplotlib adds it unsaid: `--plot configs` wrote configs.png and said "wrote configs")
        path = output_path(plot, Path(f"sizes-{spec.version}.png"))
        try:
            draw(spec, all_sizes, path)
        except OSError as error:
            raise UserError(write_problem(path, error, "name a --plot in a folder you can write")) from None
        say(f"wrote {display_path(path)}")
    return 0


def draw(spec: Spec, sizes: dict[int, Sizes], out: Path) -> None:
    """Two panels: targets' aspect ratios and pixel counts, the buckets' marked."""
    plt = pyplot("command line", "--plot", "matplotlib is not installed")
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for index, found in sizes.items():
        values = list(found.sizes.elements())
        label = f"dataset {index}"
        left.hist([_ratio(s) for s in values], bins=30, alpha=0.6, label=label)
        right.hist([s[0] * s[1] / 1e6 for s in values], bins=30, alpha=0.6, label=label)
        bucket = width_height(spec.dataset_value(index, "resolution"))
        left.axvline(_ratio(bucket), color="black", linestyle="--", linewidth=1)
        right.axvline(bucket[0] * bucket[1] / 1e6, color="black", linestyle="--", linewidth=1)
    left.set(title="target aspect ratio (w/h); dashed: bucket", xlabel="width / height", ylabel="targets")
    right.set(title="target size; dashed: bucket area", xlabel="megapixels", ylabel="targets")
    left.legend()
    figure.suptitle(
        f"{display_path(spec.path)}: {sum(sum(s.sizes.values()) for s in sizes.values())} targets"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
