"""`fplora check`: each kind of on-disk mistake gives exactly the problem line a user will read.

Every test builds a tiny project in tmp_path (a spec, five stand-in model files, 32x48 PNGs, a JSONL)
and runs from there, so paths print relative and the expected strings are exact.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from PIL import Image

from fplora.check import check_spec, verified
from fplora.check import images as check_images
from fplora.check.verified import verify_many
from fplora.musubi.names import prompt_text_problem
from fplora.problems import Problem
from fplora.spec import load_spec

SPEC = """\
project: demo
models:
  dir: models
  dit: dit/diffusion_pytorch_model-00001-of-00003.safetensors
  vae: vae.safetensors
  text_encoder1: te1.safetensors
  text_encoder2: te2.safetensors
  image_encoder: siglip.safetensors
data:
  resolution: [32, 48]
datasets:
  - jsonl: data/m.jsonl
one_frame:
  clean_indices: [0, 10]
  target_index: 5
train:
  output_dir: out
sample:
  at_first: false
  every_n_steps: null
  prompts:
    - record: 1
"""
PROMPT_LINE = 22  # line of `- record: 1` above

MODEL_FILES = (
    "dit/diffusion_pytorch_model-00001-of-00003.safetensors",
    "dit/diffusion_pytorch_model-00002-of-00003.safetensors",
    "dit/diffusion_pytorch_model-00003-of-00003.safetensors",
    "vae.safetensors",
    "te1.safetensors",
    "te2.safetensors",
    "siglip.safetensors",
)


def safetensors(data: int = 4) -> bytes:
    """A minimal valid safetensors file: one F16 tensor of `data` bytes."""
    header = json.dumps({"w": {"dtype": "F16", "shape": [data // 2], "data_offsets": [0, data]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(data)


def image(path: Path, size: tuple[int, int] = (32, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 30, 200)).save(path)
    return path


def record(name: str, caption: str = "a girl turns around", controls: int = 2) -> dict[str, str]:
    """A record whose target and controls exist under data/img (relative to the JSONL)."""
    item = {"image_path": f"img/{name}.png", "caption": caption}
    image(Path("data/img") / f"{name}.png")
    for index in range(controls):
        item[f"control_path_{index}"] = f"img/{name}_c{index}.png"
        image(Path("data/img") / f"{name}_c{index}.png")
    return item


def write_jsonl(*lines: dict[str, str] | str) -> None:
    Path("data").mkdir(exist_ok=True)
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    Path("data/m.jsonl").write_text(text + "\n", encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean project: spec, models, and a two-record dataset; the working directory is tmp_path."""
    monkeypatch.chdir(tmp_path)
    for name in MODEL_FILES:
        path = tmp_path / "models" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(safetensors())
    write_jsonl(record("a"), record("b"))
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    return tmp_path


def run(spec_text: str | None = None, *, skip_models: bool = False) -> list[str]:
    if spec_text is not None:
        Path("spec.yaml").write_text(spec_text, encoding="utf-8")
    return [str(problem) for problem in check_spec(load_spec("spec.yaml"), skip_models=skip_models)]


def test_clean_project_has_no_problems(project: Path) -> None:
    assert run() == []
    assert run(skip_models=True) == []


def test_missing_model(project: Path) -> None:
    (project / "models/vae.safetensors").unlink()
    assert run() == [
        "spec.yaml:5: models.vae: models/vae.safetensors not found"
        " — check the path; relative names resolve against models.dir, else the spec's folder"
    ]
    assert run(skip_models=True) == []


def test_missing_model_folder_is_one_problem(project: Path) -> None:
    spec = SPEC.replace("dit: dit/", "dit: gone/")
    assert run(spec) == [
        "spec.yaml:4: models.dit: models/gone/diffusion_pytorch_model-00001-of-00003.safetensors not found"
        " (folder models/gone does not exist)"
        " — check the path; relative names resolve against models.dir, else the spec's folder"
    ]


def test_missing_shard(project: Path) -> None:
    (project / "models/dit/diffusion_pytorch_model-00002-of-00003.safetensors").unlink()
    assert run() == [
        "spec.yaml:4: models.dit: missing shard models/dit/diffusion_pytorch_model-00002-of-00003.safetensors"
        " — all 3 shards must be in the same folder"
    ]


def test_empty_model(project: Path) -> None:
    (project / "models/te2.safetensors").write_bytes(b"")
    assert run() == [
        "spec.yaml:7: models.text_encoder2: models/te2.safetensors is empty (0 bytes) — download it again"
    ]


def test_bad_json_line(project: Path) -> None:
    write_jsonl(record("a"), "not json")
    assert run() == ["data/m.jsonl:2: invalid JSON: Expecting value at col 1 — one JSON object per line"]


def test_unknown_record_key(project: Path) -> None:
    write_jsonl({**record("a"), "mask_path": "img/a_mask.png"})
    assert run() == [
        "data/m.jsonl:1: mask_path: unknown record key — use image_path, caption and control_path_0..N"
    ]


def test_missing_image(project: Path) -> None:
    write_jsonl(record("a"), {**record("b"), "control_path_1": "img/gone.png"})
    assert run() == [
        "data/m.jsonl:2: control_path_1: data/img/gone.png not found"
        " — check the path; relative paths resolve against the JSONL file's folder"
    ]


def test_unreadable_and_empty_images(project: Path) -> None:
    Path("data/img/a.png").write_text("not a picture", encoding="utf-8")
    Path("data/img/b_c0.png").write_bytes(b"")
    assert run() == [
        "data/m.jsonl:1: image_path: data/img/a.png is not an image Pillow can read"
        " — use a PNG, JPEG, WEBP or BMP file",
        "data/m.jsonl:2: control_path_0: data/img/b_c0.png is empty (0 bytes) — write the image again",
    ]


def test_folder_instead_of_image(project: Path) -> None:
    Path("data/img/a.png").unlink()
    Path("data/img/a.png").mkdir()
    assert run() == [
        "data/m.jsonl:1: image_path: data/img/a.png is a folder, not an image — point at an image file"
    ]


def test_image_in_another_format_is_fine(project: Path) -> None:
    Image.new("RGB", (32, 48)).save("data/img/a.png", format="TIFF")  # a .png name, TIFF inside
    assert run() == []


def test_wrong_control_count(project: Path) -> None:
    write_jsonl(record("a", controls=1), record("b"))
    assert run() == [
        "data/m.jsonl:1: control_path: 2 control images expected (one_frame.clean_indices = [0, 10]), found 1"
        " — give every record control_path_0..1, or change one_frame.clean_indices"
    ]


def test_empty_caption(project: Path) -> None:
    write_jsonl(record("a"), record("b", caption="  "))
    assert run() == [
        "data/m.jsonl:2: caption: empty — write the caption text (musubi-tuner's JSONL reader takes it"
        " from the record; caption_extension files are not read for JSONL datasets)"
    ]


def test_duplicate_stem(project: Path) -> None:
    write_jsonl(record("a"), {**record("b"), "image_path": "other/a.png"}, record("c"))
    image(Path("data/other/a.png"))
    assert run() == [
        "data/m.jsonl:2: image_path: same file stem 'a' as line 1: musubi-tuner names caches by stem,"
        " so one record would train on the other's latents — rename one of the two images"
    ]


def test_prompt_record_out_of_range(project: Path) -> None:
    assert run(SPEC.replace("record: 1", "record: 5")) == [
        f"spec.yaml:{PROMPT_LINE}: sample.prompts[0].record: no record on line 5 of datasets[0]"
        " — use a record's line number; data/m.jsonl has records on lines 1-2"
    ]


def test_prompt_caption_trap(project: Path) -> None:
    """The training sample parser tries its option patterns on the text (the record's caption by
    default) too: a value it reads there stays unless the line sets that option again after the text.
    generate reads options only after the text."""
    sampled = SPEC.replace("  at_first: false\n  every_n_steps: null\n", "  at_first: true\n")
    caption = "L 2 characters turn around"
    write_jsonl(record("a", caption=caption), record("b"))
    trap = prompt_text_problem(caption)  # its wording belongs to musubi.names
    assert trap is not None and trap.startswith("starts with 'L '")
    assert run(sampled) == [
        f"spec.yaml:{PROMPT_LINE - 1}: sample.prompts[0].record: caption of data/m.jsonl:1 {trap}"
        " — give the prompt its own `text:`, or reword the caption"
    ]
    # the same caption is fine when the prompt has its own text
    assert run(sampled.replace("record: 1", "record: 1\n      text: she turns around")) == []
    # ... when the line sets its own --l after the text, which replaces the value read off the text
    assert run(sampled.replace("record: 1", "record: 1\n      cfg_scale: 1.5")) == []
    # ... and when training does not sample: only generate reads the prompt file then
    assert run() == []


def test_prompt_caption_read_as_an_option_the_line_sets_again(project: Path) -> None:
    """'I like ...' gives the training parser the start image 'like ...', which the line's own --i
    replaces: the sample is the one asked for. A control image read off the text is added to the
    line's own, so 'Ci ...' stays refused."""
    sampled = SPEC.replace("  at_first: false\n  every_n_steps: null\n", "  at_first: true\n")
    write_jsonl(record("a", caption="I like turning around"), record("b"))
    assert prompt_text_problem("I like turning around", {"i"}) is None
    assert run(sampled) == []
    write_jsonl(record("a", caption="Ci turns around"), record("b"))
    trap = prompt_text_problem("Ci turns around", {"ci"})
    assert trap is not None and trap.startswith("starts with 'Ci '")
    assert run(sampled) == [
        f"spec.yaml:{PROMPT_LINE - 1}: sample.prompts[0].record: caption of data/m.jsonl:1 {trap}"
        " — give the prompt its own `text:`, or reword the caption"
    ]


def test_explicit_infer_prompt(project: Path) -> None:
    spec = SPEC + (
        "infer:\n"
        "  prompts:\n"
        "    - text: turn --w 5\n"
        "      image: data/img/a_c0.png\n"
        "      control_images: [data/img/a_c0.png, data/img/nope.png]\n"
    )
    trap = prompt_text_problem("turn --w 5")
    assert trap is not None and trap.startswith("contains ' --'")
    assert run(spec) == [
        f"spec.yaml:25: infer.prompts[0].text: prompt text {trap} — reword the text",
        "spec.yaml:27: infer.prompts[0].control_images[1]: data/img/nope.png not found"
        " — check the path; relative paths resolve against the spec file's folder",
    ]


def test_size_warnings_are_capped(project: Path) -> None:
    names = [f"s{index}" for index in range(7)]
    write_jsonl(*(record(name) for name in names))
    for name in names:
        image(Path("data/img") / f"{name}.png", (8, 8))
    problems = check_spec(load_spec("spec.yaml"), skip_models=True)
    assert {problem.severity for problem in problems} == {"warning"}
    assert str(problems[0]) == (
        "data/m.jsonl:1: image_path: data/img/s0.png is 8x8, under half the pixels of resolution 32x48"
        " — it is upscaled; use larger images or a lower resolution"
    )
    assert [problem.line for problem in problems] == [1, 2, 3, 4, 5, None]
    assert [str(problem) for problem in problems if problem.line is None] == [
        "data/m.jsonl: image_path: 2 more target images are under half the pixels of resolution 32x48"
        " — only the first few are listed",
    ]


def test_aspect_warning_only_without_buckets(project: Path) -> None:
    image(Path("data/img/a.png"), (64, 16))
    assert run(skip_models=True) == [
        "data/m.jsonl:1: image_path: data/img/a.png is 64x16, an aspect ratio over 2x off resolution 32x48"
        " — without enable_bucket every image is resized and cropped to the resolution;"
        " set enable_bucket: true or crop the image"
    ]
    assert run(SPEC.replace("  resolution: [32, 48]", "  resolution: [32, 48]\n  enable_bucket: true")) == []


def sized_images(count: int) -> dict[str, check_images.ImageInfo]:
    """`count` PNGs of distinct widths under data/many, a text file and a missing path among them:
    each path's expected verdict, so that a verdict given to the wrong path shows."""
    expected = {}
    for number in range(count):
        path = image(Path("data/many") / f"{number:03d}.png", (8 + number, 8))
        expected[str(path)] = check_images.ImageInfo(size=(8 + number, 8))
    Path("data/many/003.png").write_text("not a picture", encoding="utf-8")
    expected["data/many/003.png"] = verify_many(["data/many/003.png"])["data/many/003.png"]
    expected["data/many/gone.png"] = check_images.NOT_FOUND
    return expected


def decoders(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Each decode appends the decoding process's id and the path to `log` (forked helpers inherit
    the patch)."""
    real = verified.decode_stat

    def logged(path: str) -> tuple[int, int, check_images.ImageInfo]:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {path}\n")
        return real(path)

    monkeypatch.setattr(verified, "decode_stat", logged)


def test_decoding_is_shared_with_a_helper_process(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the rest would take long enough, this process and a helper decode it between them; each
    path keeps its own verdict."""
    expected = sized_images(40)
    monkeypatch.setattr(verified, "ESTIMATE_AFTER", 0)
    monkeypatch.setattr(verified, "PARALLEL_FROM", 0)
    monkeypatch.setattr(verified, "_workers", lambda: 2)
    decoders(monkeypatch, log := project / "decoders.log")
    assert verify_many(list(expected)) == expected
    decoded = [line.split() for line in log.read_text(encoding="utf-8").splitlines()]
    assert sorted(path for _, path in decoded) == sorted(expected)  # every path decoded once
    by_this = [path for pid, path in decoded if pid == str(os.getpid())]
    assert len(by_this) > 1  # this process decoded more than the first image it timed
    assert len(by_this) < len(expected)  # a helper decoded the others


def test_short_decoding_stays_in_this_process(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = sized_images(12)
    monkeypatch.setattr(verified, "_workers", lambda: 2)
    decoders(monkeypatch, log := project / "decoders.log")
    assert verify_many(list(expected)) == expected  # a few small images: far below PARALLEL_FROM
    assert {line.split()[0] for line in log.read_text(encoding="utf-8").splitlines()} == {str(os.getpid())}


def test_decoding_goes_on_here_when_no_process_can_start(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import concurrent.futures

    class NoProcesses:
        def __init__(self, **_: object) -> None:
            raise OSError("no processes in this sandbox")

    expected = sized_images(20)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", NoProcesses)
    monkeypatch.setattr(verified, "ESTIMATE_AFTER", 0)
    monkeypatch.setattr(verified, "PARALLEL_FROM", 0)
    monkeypatch.setattr(verified, "_workers", lambda: 2)
    assert verify_many(list(expected)) == expected


def cut(path: Path, keep: int = 500) -> None:
    """A PNG whose header is whole but whose pixels stop after `keep` bytes."""
    noise = Image.effect_noise((256, 256), 60).convert("RGB")
    noise.save(path)
    path.write_bytes(path.read_bytes()[:keep])


def test_cut_image_is_refused_at_its_record(project: Path) -> None:
    """A PNG cut to its first 500 bytes has a whole header: only decoding it finds the cut."""
    cut(Path("data/img/b_c1.png"))
    assert Image.open("data/img/b_c1.png").size == (256, 256)  # the header alone passes
    assert run(skip_models=True) == [
        "data/m.jsonl:2: control_path_1: data/img/b_c1.png cannot be decoded (image file is truncated),"
        " so musubi-tuner's caching would stop on it — write or download the image again"
    ]


@pytest.mark.parametrize("cut_off", [0, 2, 2000])
def test_a_jpeg_is_decoded_whole_at_its_smallest_scale(project: Path, cut_off: int) -> None:
    """JPEGs decode at libjpeg's 1/8 scale: the verdict keeps the full size, and a JPEG cut short,
    even by its 2-byte end marker alone, is refused as at full size."""
    noise = Image.effect_noise((203, 120), 60).convert("RGB")
    noise.save("data/img/photo.jpg", quality=95)
    data = Path("data/img/photo.jpg").read_bytes()
    Path("data/img/photo.jpg").write_bytes(data[: len(data) - cut_off])
    (info,) = verify_many(["data/img/photo.jpg"]).values()
    if cut_off == 0:
        assert info == check_images.ImageInfo(size=(203, 120))
    else:
        assert info.size is None and info.error is not None
        assert info.error.startswith("cannot be decoded (image file is truncated")


def test_verdicts_are_remembered_until_the_file_changes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(skip_models=True) == []
    stored = json.loads(Path(".fplora/images.json").read_text(encoding="utf-8"))
    assert sorted(Path(key).name for key in stored["images"]) == sorted(
        p.name for p in Path("data/img").iterdir()
    )
    decoded: list[str] = []
    real = verified.decode_stat
    monkeypatch.setattr(verified, "decode_stat", lambda path: decoded.append(path) or real(path))
    assert run(skip_models=True) == []
    assert decoded == []  # nothing decoded again: size and time unchanged

    cut(Path("data/img/a_c0.png"))  # rewritten in place: a new size and time
    (problem,) = run(skip_models=True)
    assert problem.startswith("data/m.jsonl:1: control_path_0: data/img/a_c0.png cannot be decoded")
    assert [Path(path).name for path in decoded] == ["a_c0.png"]
    decoded.clear()
    assert len(run(skip_models=True)) == 1 and decoded == []  # the bad verdict is remembered too


def test_store_of_another_pillow_is_ignored(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(skip_models=True)
    monkeypatch.setattr(verified.PIL, "__version__", "0.0.1")
    decoded: list[str] = []
    real = verified.decode_stat
    monkeypatch.setattr(verified, "decode_stat", lambda path: decoded.append(path) or real(path))
    assert run(skip_models=True) == []
    assert len(decoded) == 6


def test_concurrent_checks_merge_their_verdicts(project: Path) -> None:
    """Two checks that read the store before either wrote it both keep their verdicts."""
    state = Path(".fplora")
    first, second = verified._Store(state), verified._Store(state)
    assert first.load() == second.load() == {}
    first.save({"/x/a.png": [1, 2, 3, 4]}, [])
    second.save({"/x/b.png": [5, 6, "is empty (0 bytes)", "write the image again"]}, [])
    assert verified._Store(state).load() == {
        "/x/a.png": [1, 2, 3, 4],
        "/x/b.png": [5, 6, "is empty (0 bytes)", "write the image again"],
    }
    Path(".fplora/images.json").write_text("{half", encoding="utf-8")  # a torn or hand-edited store
    assert verified._Store(state).load() == {}


def test_spec_in_configs_keeps_verdicts_at_the_project_root(project: Path) -> None:
    Path("configs").mkdir()
    Path("configs/v1.yaml").write_text(
        SPEC.replace("dir: models", "dir: ../models")
        .replace("jsonl: data", "jsonl: ../data")
        .replace("output_dir: out", "output_dir: ../out"),
        encoding="utf-8",
    )
    assert [str(p) for p in check_spec(load_spec("configs/v1.yaml"), skip_models=True)] == []
    assert Path(".fplora/images.json").is_file() and not Path("configs/.fplora").exists()


def test_problem_type(project: Path) -> None:
    (project / "models/vae.safetensors").unlink()
    (problem,) = check_spec(load_spec("spec.yaml"))
    assert isinstance(problem, Problem) and problem.severity == "error"


def test_multi_gpu_warmup_is_divided_by_processes(project: Path) -> None:
    extra = "launch:\n  num_processes: 2\n"
    spec = SPEC.replace("train:\n", "train:\n  optimizer: {lr_warmup_steps: 10}\n") + extra
    Path("spec.yaml").write_text(spec, encoding="utf-8")
    warnings = [
        str(p) for p in check_spec(load_spec("spec.yaml"), skip_models=True) if p.severity == "warning"
    ]
    assert warnings == [
        "spec.yaml:17: train.optimizer.lr_warmup_steps: musubi-tuner divides an integer warmup by the"
        " 2 processes (10 → 5) — write 20 to warm up for 10 steps"
    ]


def test_single_gpu_has_no_launch_warnings(project: Path) -> None:
    spec = SPEC.replace("train:\n", "train:\n  optimizer: {lr_warmup_steps: 10}\n")
    Path("spec.yaml").write_text(spec, encoding="utf-8")
    assert [p for p in check_spec(load_spec("spec.yaml"), skip_models=True) if p.severity == "warning"] == []


# --- model files are whole safetensors files (header only) ---------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"garbage\n", "is not a safetensors file (starts with 'garbage') — download it again"),
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 246144352\n",
            "is a Git LFS pointer, not the weights — download the file itself (git lfs pull, or hf download)",
        ),
        (
            safetensors(4000)[:-1500],
            "is truncated: the header says 4.1 kB, the file has 2.6 kB — download it again",
        ),
        (
            safetensors(4)[:-1],
            "is truncated: the header says 73 bytes, the file has 72 bytes — download it again",
        ),
        (
            safetensors(4) + b"\0\0",
            "is 2 bytes longer than its header says (73 bytes): the safetensors library refuses it"
            " — download it again",
        ),
        (
            safetensors(4)[:20],
            "is truncated: 20 bytes, shorter than its own header (69 bytes) — download it again",
        ),
        (struct.pack("<Q", 5) + b"{x: 1", "is damaged: its header is not a JSON object — download it again"),
        (
            b"PK\x03\x04" + bytes(100),
            "is not a safetensors file (a PyTorch checkpoint?) — use the .safetensors version of the model",
        ),
        (
            bytes([1, 2, 3, 0, 0, 0, 0, 0, 9]) + bytes(30),
            "is not a safetensors file (starts with bytes 01 02 03 00 00 00 00 00) — download it again",
        ),
    ],
    ids=[
        "text",
        "lfs pointer",
        "truncated",
        "one byte short",
        "too long",
        "cut in header",
        "bad header",
        "zip",
        "binary",
    ],
)
def test_model_that_is_not_a_whole_safetensors_file(project: Path, content: bytes, expected: str) -> None:
    (project / "models/te2.safetensors").write_bytes(content)
    assert run() == [f"spec.yaml:7: models.text_encoder2: models/te2.safetensors {expected}"]
    assert run(skip_models=True) == []


def test_every_shard_is_checked(project: Path) -> None:
    (project / "models/dit/diffusion_pytorch_model-00003-of-00003.safetensors").write_text("<html>\n")
    assert run() == [
        "spec.yaml:4: models.dit: models/dit/diffusion_pytorch_model-00003-of-00003.safetensors is not a"
        " safetensors file (starts with '<html>': a web page, not the model) — download it again"
    ]


def test_only_safetensors_files_are_read(project: Path) -> None:
    """musubi-tuner torch.loads a VAE that is not .safetensors: fplora cannot look inside those."""
    Path("models/vae.pt").write_bytes(b"PK\x03\x04 a torch zip")
    assert run(SPEC.replace("vae: vae.safetensors", "vae: vae.pt")) == []


# --- optimizer names musubi-tuner resolves ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["adamw8bit", "AdamW8bit", "adamw", "AdaFactor", "AdamW", "SGD", "RAdam", "torch.optim.Adam",
     "bitsandbytes.optim.PagedAdEMAMix8bit", "prodigyopt.Prodigy", "schedulefree.AdamWScheduleFree"],
)  # fmt: skip
def test_optimizers_musubi_resolves(project: Path, name: str) -> None:
    assert run(SPEC.replace("train:\n", f"train:\n  optimizer: {{type: {name}}}\n")) == []


def test_optimizers_that_resolve_but_cannot_train(project: Path) -> None:
    from fplora.problems import UserError

    with pytest.raises(UserError) as error:
        run(SPEC.replace("train:\n", "train:\n  optimizer: {type: LBFGS}\n"))
    assert str(error.value) == (
        "spec.yaml:17: train.optimizer.type: torch.optim.LBFGS needs a closure in step(),"
        " which musubi-tuner's training loop does not pass — use AdamW, adamw8bit or another optimizer"
    )


# --- dataset files: missing, raw lines, control keys ----------------------------------------------


def test_missing_dataset_is_one_problem_at_the_spec(project: Path) -> None:
    Path("data/m.jsonl").unlink()
    assert run() == [
        "spec.yaml:12: datasets[0].jsonl: dataset JSONL file not found: data/m.jsonl"
        " — check the path; relative paths resolve against the folder of the spec file that writes them;"
        " not made yet? `fplora dataset init <folder of pictures>` writes one"
    ]
    assert run(SPEC.replace("jsonl: data/m.jsonl", "jsonl: gone/m.jsonl")) == [
        "spec.yaml:12: datasets[0].jsonl: dataset JSONL file not found: gone/m.jsonl"
        " (folder gone does not exist)"
        " — check the path; relative paths resolve against the folder of the spec file that writes them;"
        " not made yet? `fplora dataset init <folder of pictures>` writes one"
    ]
    assert run(SPEC.replace("jsonl: data/m.jsonl", "jsonl: data")) == [
        "spec.yaml:12: datasets[0].jsonl: data is a folder, not a JSONL file — name the metadata .jsonl file itself"
    ]
    Path("data/m.jsonl").write_bytes(b'{"caption": "a"}\n{"caption": "\x82\xa0"}\n')  # Shift_JIS
    assert run(SPEC) == [
        "spec.yaml:12: datasets[0].jsonl: data/m.jsonl is not UTF-8 text (line 2: byte 0x82); musubi-tuner"
        " reads JSONL as UTF-8 — save it as UTF-8 (e.g. iconv -f cp932 -t utf-8, for a file from a Japanese"
        " Windows editor)"
    ]
    real_access = os.access
    with pytest.MonkeyPatch.context() as patch:  # tests run as root, which reads any file
        patch.setattr(
            os, "access", lambda path, mode: not str(path).endswith("m.jsonl") and real_access(path, mode)
        )
        assert run(SPEC) == [
            "spec.yaml:12: datasets[0].jsonl: cannot read data/m.jsonl: permission denied"
            " — make it readable: chmod a+r data/m.jsonl"
        ]


def test_a_renamed_dataset_folder_is_named_with_the_path_to_write(project: Path) -> None:
    """The user renamed data/ after writing the spec: "check the path" left them to work out that
    the file they meant is the one in the renamed folder."""
    Path("data").rename("pictures")
    assert run() == [
        "spec.yaml:12: datasets[0].jsonl: dataset JSONL file not found: data/m.jsonl"
        " (folder data does not exist); pictures/m.jsonl has its name"
        " — renamed? name it: jsonl: pictures/m.jsonl"
    ]


def test_raw_line_breaks_are_one_problem(project: Path) -> None:
    broken = json.dumps(record("b", caption="she turns\n\naround")).replace("\\n", "\n")
    write_jsonl(record("a"), broken, record("c", controls=1))
    assert run(skip_models=True) == [
        "data/m.jsonl:2: caption: invalid JSON: Unterminated string starting at col 40: the caption has a raw"
        " line break, so the record runs on into lines 3-4 — write the line break as \\n (one JSON object per line)",
        "data/m.jsonl:5: control_path: 2 control images expected (one_frame.clean_indices = [0, 10]), found 1"
        " — give every record control_path_0..1, or change one_frame.clean_indices",
    ]


def test_unterminated_line_says_where(project: Path) -> None:
    write_jsonl(record("a"), json.dumps(record("b"))[:40])
    assert run(skip_models=True) == [
        "data/m.jsonl:2: invalid JSON: Unterminated string starting at col 40 — one JSON object per line"
    ]


def test_blank_line_where_musubi_reads_the_file_itself(project: Path) -> None:
    """With absolute paths musubi-tuner reads the JSONL as it is, and json.loads('') fails."""
    absolute = [
        {key: str(project / "data" / value) if key != "caption" else value for key, value in r.items()}
        for r in (record("a"), record("b"))
    ]
    write_jsonl(absolute[0], absolute[1], "", "")
    assert run(skip_models=True) == [
        "data/m.jsonl:3: blank line (and 1 more): musubi-tuner parses every line as JSON and stops at a"
        " blank one — delete the blank lines"
    ]
    write_jsonl(record("a"), "", record("b"))  # relative paths: fplora hands musubi-tuner its own copy
    assert run(skip_models=True) == [
        "data/m.jsonl:2: blank line: musubi-tuner parses every line as JSON and stops at a blank one;"
        " fplora hands musubi-tuner a copy without them (the records use relative paths) — delete the blank lines"
    ]
    problems = check_spec(load_spec("spec.yaml"), skip_models=True)
    assert [p.severity for p in problems] == ["warning"]  # the copy trains fine


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"control_path_1": "img/a_c0.png", "control_path_2": "img/a_c1.png"},
            "control_path_1: no control_path_0 before it: musubi-tuner renumbers control images in order,"
            " so control_path_1 would be control image 0 — number the control images control_path_0..1 without gaps",
        ),
        (
            {"control_path_0": "img/a_c0.png", "control_path_00": "img/a_c1.png"},
            "control_path_0: control_path_0 and control_path_00 both give control image 0:"
            " musubi-tuner renumbers or drops all but one of them — remove all but one",
        ),
    ],
    ids=["gap at 0", "same number twice"],
)
def test_control_keys_musubi_would_renumber(project: Path, keys: dict[str, str], expected: str) -> None:
    write_jsonl({"image_path": "img/a.png", "caption": "a girl turns", **keys}, record("b"))
    assert run(skip_models=True) == [f"data/m.jsonl:1: {expected}"]


def test_control_keys_as_musubi_reads_them(project: Path) -> None:
    """`control_path` is control image 0; captions that mention keys do not confuse the scan."""
    one = SPEC.replace("clean_indices: [0, 10]", "clean_indices: [0]")
    write_jsonl(
        {"image_path": "img/a.png", "caption": 'with "control_path_0" in it', "control_path": "img/a_c0.png"},
        {**record("b", controls=1), "caption": 'mentions "control_path_1"'},
    )
    assert run(one, skip_models=True) == []


def test_unicode_line_separators_inside_a_caption_are_not_line_breaks(project: Path) -> None:
    """musubi-tuner reads the JSONL in text mode (\\n, \\r, \\r\\n); U+2028 and U+0085 are caption text."""
    caption = "she turns\u2028around\u0085slowly"
    write_jsonl(json.dumps(record("a", caption=caption), ensure_ascii=False), record("b"))
    assert run(skip_models=True) == []


def test_files_named_by_pass_through_options_must_exist(project: Path) -> None:
    """musubi-tuner opens network_weights only after loading the models."""
    spec = SPEC + "musubi:\n  config: {network_weights: old/lora.safetensors}\n"
    problems = run(spec, skip_models=True)
    assert len(problems) == 1
    assert "musubi.config.network_weights: old/lora.safetensors not found — check the path" in problems[0]
    Path("old").mkdir()
    Path("old/lora.safetensors").write_bytes(b"")
    assert run(spec, skip_models=True) == []


@pytest.mark.parametrize(
    ("caption", "start"),
    [
        ("#1 fan art: she turns", "starts with '#': musubi-tuner skips such lines"),  # training skips it
        ("  # she turns", "starts with '#'"),  # generate strips the line first, then skips it
        ("   ", "caption: empty"),  # an empty caption is a record problem
    ],
)
def test_captions_musubi_would_skip_as_comments(project: Path, caption: str, start: str) -> None:
    write_jsonl(record("a", caption=caption), record("b"))
    problems = run()
    assert len(problems) == 1 and start in problems[0], problems


def test_blank_prompt_text_and_negative_prompt_with_an_option(project: Path) -> None:
    """A blank text makes the first option the prompt; ' --w 1024' in --n sets the width."""
    blank = SPEC.replace("record: 1", 'record: 1\n      text: "  "')
    (problem,) = run(blank)
    assert "sample.prompts[0].text: prompt text is empty" in problem
    negative = SPEC.replace(
        "record: 1", 'record: 1\n      cfg_scale: 3\n      negative_prompt: "blurry --w 1024, bad"'
    )
    (problem,) = run(negative)
    assert "sample.prompts[0].negative_prompt: negative prompt contains ' --'" in problem


def test_a_16_bit_image_is_refused(project: Path) -> None:
    """Pillow's convert("RGB") clips 16-bit values: the control image would train as white."""
    write_jsonl(record("a"), record("b"))
    Image.new("I;16", (32, 48), 40_000).save("data/img/b_c1.png")
    (problem,) = run()
    assert "b_c1.png is a 16-bit or float image" in problem and "save it as an 8-bit RGB image" in problem


def test_the_progress_bar_waits_and_shows_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past `PROGRESS_AFTER` seconds of decoding a bar appears on a terminal; a short check, or
    output to a file or pipe, prints nothing."""
    import io

    import rich.console

    shown = io.StringIO()
    base = rich.console.Console

    def console(terminal: bool) -> type[rich.console.Console]:
        class Console(base):  # type: ignore[valid-type,misc]
            def __init__(self, **_: object) -> None:
                super().__init__(file=shown, force_terminal=terminal, width=100)

        return Console

    monkeypatch.setattr(rich.console, "Console", console(False))
    monkeypatch.setattr(verified, "PROGRESS_AFTER", 0.0)
    with verified._bar(10, enabled=True) as advance:
        advance(5)
        assert advance.progress is None
    monkeypatch.setattr(rich.console, "Console", console(True))
    monkeypatch.setattr(verified, "PROGRESS_AFTER", 3600.0)
    with verified._bar(10, enabled=True) as advance:
        advance(5)
        assert advance.progress is None  # not yet: a short check shows nothing
    monkeypatch.setattr(verified, "PROGRESS_AFTER", 0.0)
    with verified._bar(10, enabled=True) as advance:
        advance(5)
        assert advance.progress is not None
        advance(5)
    assert "decoding images once" in shown.getvalue()
