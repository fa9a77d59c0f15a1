"""Written-out inference prompts against the training captions.

The memo: "at inference, use exactly the training caption: a slightly different wording can lose the
effect". A prompt typed into the spec by hand drifts from the caption it was copied from (a changed
word, a lost comma, different case: the LLaMA tokenizer is case-sensitive). So every `infer` prompt
with its own `text:` is compared with every caption of the spec's datasets:

- the same text as a caption: silent;
- a near match (the same after folding whitespace and case, or a small edit distance): a warning
  with the closest caption and a word diff, an error with `--strict-captions`;
- nothing near: silent, since a prompt unlike every caption is a deliberate new prompt.

Prompts taken from a record (`record:` without `text:`) are the caption verbatim and not compared.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from fplora.datasets.records import Records
from fplora.problems import Problem, display_path, plural
from fplora.spec.models import Spec

NEAR_FRACTION = 0.1
"""Edits allowed, as a share of the longer text's characters (at least `NEAR_MINIMUM`)."""
NEAR_MINIMUM = 3


def normalise(text: str) -> str:
    """Whitespace collapsed, case folded: differences a reader does not see, but the tokenizer does."""
    return " ".join(text.split()).casefold()


def allowed_edits(a: str, b: str) -> int:
    return max(NEAR_MINIMUM, int(max(len(a), len(b)) * NEAR_FRACTION))


def bounded_distance(a: str, b: str, limit: int) -> int | None:
    """Levenshtein distance of `a` and `b` when at most `limit`, else None.

    Only the diagonal band of width `limit` is computed, and a row whose best entry already exceeds
    the limit ends the search: 10,000 captions stay cheap."""
    if abs(len(a) - len(b)) > limit:
        return None
    if len(a) > len(b):
        a, b = b, a
    big = limit + 1
    previous = [j if j <= limit else big for j in range(len(b) + 1)]
    for i in range(1, len(a) + 1):
        low, high = max(1, i - limit), min(len(b), i + limit)
        current = [big] * (len(b) + 1)
        current[0] = i if i <= limit else big
        for j in range(low, high + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        if min(current[max(0, low - 1) : high + 1]) > limit:
            return None
        previous = current
    return previous[len(b)] if previous[len(b)] <= limit else None


@dataclass(frozen=True)
class NearCaption:
    caption: str
    distance: int  # edits between the normalised texts (0: only case or whitespace differ)


def closest_caption(text: str, captions: Iterable[str]) -> NearCaption | None:
    """The caption nearest to `text` within the allowed edits, or None when `text` is a caption
    exactly or no caption is near. Ties go to the caption listed first."""
    unique = list(dict.fromkeys(captions))
    if text in unique:
        return None
    wanted = normalise(text)
    best: NearCaption | None = None
    for caption in unique:
        folded = normalise(caption)
        limit = allowed_edits(wanted, folded)
        if best is not None:
            limit = min(limit, best.distance - 1)
            if limit < 0:
                break
        distance = 0 if folded == wanted else bounded_distance(wanted, folded, limit)
        if distance is not None:
            best = NearCaption(caption, distance)
    return best


def word_diff(caption: str, text: str) -> str:
    """`a character [-turns-] {+spins+} left`: the caption's words, with what the prompt removed in
    [-…-] and added in {+…+}. Words compare exactly, so a case change shows as a change."""
    old, new = caption.split(), text.split()
    parts: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            parts += old[i1:i2]
            continue
        if i2 > i1:
            parts.append("[-" + " ".join(old[i1:i2]) + "-]")
        if j2 > j1:
            parts.append("{+" + " ".join(new[j1:j2]) + "+}")
    diff = " ".join(parts)
    if diff == " ".join(old) and caption != text:
        return f"{diff} (only spacing differs)"
    return diff


def training_captions(spec: Spec, records: Callable[[int], Records]) -> list[str]:
    """Every caption of every dataset of the spec, in dataset and line order."""
    captions = []
    for index, dataset in enumerate(spec.datasets):
        if not dataset.jsonl.is_file():
            continue
        captions += [r.caption for r in records(index).items if r.caption]
    return captions


def caption_problems(spec: Spec, records: Callable[[int], Records], *, strict: bool) -> list[Problem]:
    """A warning (an error when `strict`) for each written-out infer prompt near, but not equal to,
    a training caption. Located at the prompt's `text:` line in the spec."""
    section, prompts = spec.prompts_of("infer")
    written = [(i, p.text) for i, p in enumerate(prompts) if p.text is not None]
    if not written:
        return []
    captions = training_captions(spec, records)
    return [
        problem
        for index, text in written
        for problem in _problem(spec, section, index, text, captions, strict=strict)
    ]


def _problem(
    spec: Spec, section: str, index: int, text: str, captions: Sequence[str], *, strict: bool
) -> list[Problem]:
    near = closest_caption(text, captions)
    if near is None:
        return []
    how = (
        "differs from a training caption only in case or spacing"
        if near.distance == 0
        else f"is {plural(near.distance, 'edit')} from a training caption"
    )
    message = (
        f"{how}, and a prompt worded unlike its caption can lose the LoRA's effect:"
        f" {word_diff(near.caption, text)}"
    )
    fix = f"copy the caption exactly ({near.caption!r}), or use record: for that record's caption"
    if not strict:
        fix += "; --strict-captions makes this an error"
    severity = "error" if strict else "warning"
    return [spec.problem((section, "prompts", index, "text"), message, fix, severity)]


# The text encoders' limits (frame_pack/hunyuan.py `encode_prompt_conds`): the LLaMA encoder gets the
# caption truncated to 256 tokens after its prompt template (max_length=256 + crop_start), CLIP-L to 77
# (its pooled output). Without the tokenizer here, tokens are estimated: a run of ASCII letters is one
# token per 6 letters (at least one), digits one per 3 (LLaMA 3 splits numbers so), other ASCII
# symbols one each, and any other character (kana, kanji, accents) one each, which is about what
# LLaMA 3's tokenizer gives for Japanese. A caption is warned about only well past the limit.
LLAMA_TOKENS = 256
CLIP_TOKENS = 77
_PIECE = re.compile(r"[A-Za-z]+|[0-9]+|\s+|.", re.S)


def _piece_tokens(piece: str) -> int:
    if piece[0].isspace():
        return 0
    if piece[0].isascii() and piece[0].isalpha():
        return -(-len(piece) // 6)
    if piece[0].isascii() and piece[0].isdigit():
        return -(-len(piece) // 3)
    return 1


def estimated_tokens(text: str) -> tuple[int, int | None]:
    """(estimated tokens of `text`, the character index where the LLaMA encoder's 256th token ends,
    or None when it fits)."""
    total, cut = 0, None
    for match in _PIECE.finditer(text):
        piece, before = match.group(0), total
        total += _piece_tokens(piece)
        if cut is None and total > LLAMA_TOKENS:
            per = (
                6 if piece.isascii() and piece.isalpha() else 3 if piece.isascii() and piece.isdigit() else 1
            )
            cut = match.start() + (LLAMA_TOKENS - before) * per
    return total, cut


def too_long(text: str) -> tuple[str, str] | None:
    """(message, fix) for a caption or prompt the LLaMA text encoder cuts, else None.

    Every character counts as one token at most, so text no longer than the limit fits unparsed."""
    if len(text) <= LLAMA_TOKENS:
        return None
    tokens, cut = estimated_tokens(text)
    if cut is None:
        return None
    lost = text[cut:].strip()
    shown = lost if len(lost) <= 40 else lost[:37] + "..."
    return (
        f"about {tokens:,} tokens ({len(text):,} characters): the text encoder reads the first"
        f" {LLAMA_TOKENS} (CLIP-L the first {CLIP_TOKENS}) and cuts the rest, from about character"
        f" {cut:,}: {shown!r}",
        f"shorten it to what matters (under about {LLAMA_TOKENS} tokens, ~1,000 characters of English)",
    )


def caption_length_problems(records: Records, limit: int) -> list[Problem]:
    """A warning per record whose caption the text encoder cuts, the first `limit` listed and the rest
    counted in one line."""
    shown = display_path(records.jsonl)
    found = [(r.line, said) for r in records.items if r.caption and (said := too_long(r.caption))]
    problems = [
        Problem(shown, line, "caption", message, fix, "warning") for line, (message, fix) in found[:limit]
    ]
    if len(found) > limit:
        problems.append(
            Problem(
                shown,
                None,
                "caption",
                f"{len(found) - limit:,} more captions are longer than the text encoder reads",
                "only the first few are listed",
                "warning",
            )
        )
    return problems


def prompt_length_problems(spec: Spec) -> list[Problem]:
    """A warning for each written-out sample or inference prompt the text encoder cuts."""
    problems = []
    for section in ("sample", "infer"):
        for index, prompt in enumerate(getattr(spec, section).prompts or []):
            if prompt.text and (said := too_long(prompt.text)):
                problems.append(spec.problem((section, "prompts", index, "text"), *said, severity="warning"))
    return problems
