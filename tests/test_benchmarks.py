"""The GPU drivers run every stage and assert against a fake musubi-tuner on the CPU.

Device time is scarce (minutes per session): a driver broken by a change to fplora (a new default, a
renamed output) must fail here, not ten minutes into a GPU call. Each driver's `--local-fake` mode
puts its own stand-in for the musubi-tuner Python behind FPLORA_MUSUBI_PYTHON and runs fplora's CLI
for real. The GPU option matrix (`gpu_matrix.py --local-fake`, ~40 s) is left to its own runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from benchmark_modules import benchmark_module

REPO = Path(__file__).resolve().parents[1]
# about half the suite's time: `uv run pytest -m "not drivers"` leaves them out; CI runs them
pytestmark = pytest.mark.drivers


def _harness() -> SimpleNamespace:
    """benchmarks/harness (the drivers' package), imported as the drivers import it."""
    names = ("driver", "state", "timings")
    return SimpleNamespace(**{n: benchmark_module(f"harness.{n}") for n in names})


def _run_fake(driver: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`benchmarks/<driver>.py --local-fake --root ROOT ARGS`, which must pass."""
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / f"{driver}.py"),
            "--local-fake",
            "--root",
            str(root),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done


# preset_speed's default stages are gpu_e2e's: name its own, as its docstring does
SPEED = [
    "install",
    "weights",
    "data",
    "check",
    "cache",
    "speed-memo",
    "speed-preset",
    "speed-auto",
    "speed-sampled",
]


@pytest.mark.parametrize(
    ("driver", "stages"),
    [
        ("gpu_e2e", []),
        ("sweep_speed", []),
        ("eval_check", []),
        ("export_check", []),  # issue 23: both layouts generate the same images
        ("preset_speed", [*SPEED, "speed-report"]),
        # issue 21's other shapes: one control image, landscape, each shape in its own --root
        ("preset_speed", ["--shape", "768x512", "--controls", "1", *SPEED, "speed-report"]),
    ],
)
def test_the_gpu_driver_passes_against_its_fake(driver: str, stages: list[str], tmp_path: Path) -> None:
    _run_fake(driver, tmp_path / "r", *stages)


def test_two_drivers_run_side_by_side_and_come_back_in_one_archive(tmp_path: Path) -> None:
    """benchmarks/gpu_pair.sh: a shared setup, one lane per GPU, every driver call with what is left
    of the deadline and its own --out, and everything packed into pair.tgz (the device returns at
    most 8 files)."""
    import os
    import tarfile

    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OUT=str(out), PAIR_ARGS=f"--local-fake --root {tmp_path / 'r'}")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # python3 = this Python
    done = subprocess.run(
        [
            "bash",
            str(REPO / "benchmarks" / "gpu_pair.sh"),
            "300",
            "eval_check.py install? weights? data? + sweep_speed.py loras?",
            "sweep_speed.py sweep? + eval_check.py evalcache? evaltrain? evaluate",
            "sweep_speed.py separate again compare",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
        env=env,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert [p.name for p in out.iterdir()] == ["pair.tgz"]
    for lane in ("setup-1", "setup-2", "gpu0-1", "gpu0-2", "gpu1-1"):
        assert f"=== {lane} exited 0" in done.stdout, done.stdout[-3000:]
    with tarfile.open(out / "pair.tgz") as tar:
        names = set(tar.getnames())
    assert {"gpu0-2/eval-check.json", "gpu1-1/sweep-speed.json", "gpu1-1/console.log"} <= names


@pytest.mark.parametrize(
    ("log", "steps"),
    [
        # batch 16, no accumulation: k is drawn twice (update, postfix), then step k+1 begins
        ("h200-b16.log", {"2": 22.56, "3": 22.29}),
        # batch 1 x 16 accumulation steps: every micro-batch draws k again; the first parser read
        # one micro-batch (about 1.03 s) as the step
        ("h200-b1x16.log", {"2": 15.14, "3": 15.37}),
    ],
)
def test_step_times_come_from_musubi_tuners_bar_with_and_without_accumulation(
    log: str, steps: dict[str, float]
) -> None:
    """The `steps` bar lines of two real H200 runs (benchmarks/preset_speed.py, 2026-11-30)."""
    harness = _harness()
    timings = harness.timings.step_timings(
        harness.timings.read_log(REPO / "tests" / "fixtures" / "bars" / log), 16
    )
    assert timings["s_per_step_each"] == steps
    assert timings["samples_per_s"] == pytest.approx(16 / (sum(steps.values()) / 2), abs=2e-3)
    assert timings["sample_and_save_s_after_step"] == {"2": 0.0, "3": 0.0}


def test_both_nvidia_smi_monitors_read_their_query_through_one_poller(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The per-GPU monitor (harness/proc.py) and gpu_matrix.py's per-process one share SmiPoll: each
    asks its own query and keeps its own numbers; a line that is not two numbers is passed over."""
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(
        "#!/bin/sh\n"
        'echo "$@" >> "$(dirname "$0")/argv"\n'
        'case "$1" in\n'
        "  --query-gpu=*) printf '0, 1200\\n1, 300\\nNo devices were found\\n0, 1500\\n' ;;\n"
        "  *) printf '4242, 700\\n4243, 100\\n4242, 900\\n' ;;\n"
        "esac\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")
    proc, matrix = benchmark_module("harness.proc"), benchmark_module("gpu_matrix")
    gpus = proc.GpuMon(tmp_path / "smi.csv")
    procs = matrix.ProcMon()
    for monitor in (gpus, procs):
        monitor.reader.join(10)
        monitor.stop()
    assert gpus.peaks(0, time.time() + 1) == {"0": 1500, "1": 300}
    assert len((tmp_path / "smi.csv").read_text().splitlines()) == 3
    assert (procs.of({4242, 4243}), procs.of({1})) == (1000, None)
    assert sorted((smi.parent / "argv").read_text().splitlines()) == [
        "--query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 500",
        "--query-gpu=index,memory.used --format=csv,noheader,nounits -lms 250",
    ]


def test_a_lanes_peak_memory_is_its_own_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """nvidia-smi reports every GPU of the host: beside another lane (gpu_pair.sh) the H200 run of
    2026-11-30 credited the evaluation with the sweep's 60,953 MiB on the other GPU."""
    harness = _harness()

    class Samples:
        def peaks(self, t0: float, t1: float) -> dict[str, int]:
            return {"0": 60953, "1": 27805}

    state = harness.state
    monkeypatch.setattr(state, "GPU", Samples())
    monkeypatch.setattr(
        state, "CFG", SimpleNamespace(root=tmp_path, out=tmp_path, elapsed=lambda: 0.0), raising=False
    )
    monkeypatch.setattr(state, "SUMMARY", {"stages": []})
    for visible, peak in (("1", 27805), ("0", 60953), ("", 60953)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        stage = harness.driver.new_stage(f"lane {visible or 'all'}")
        harness.driver.finish(stage, 0.0)
        assert stage["peak_MiB"] == peak
        assert stage["peak_MiB_per_gpu"] == {"0": 60953, "1": 27805}


def test_the_preset_matrix_runs_every_part_and_folds_into_the_measurements(tmp_path: Path) -> None:
    """`preset_speed.py --matrix h200` (all its parts, against the fake): every variant records the
    settings fplora resolved for it, and fold_speed.py turns the results into measurements.json rows
    that the presets' table reads back."""
    import json

    root = tmp_path / "r"
    _run_fake("preset_speed", root, "install", "weights", "data", "cache", "--matrix", "h200")
    result = json.loads((root / "out" / "preset_speed.json").read_text())
    assert {"date", "card", "versions", "command", "variants"} <= set(result)
    variants = result["variants"]
    assert set(variants) >= {"memo", "auto", "nosplit", "tf32"}
    assert set(variants) >= {"auto@768x512c1", "auto@640x640c2"}
    shaped = variants["auto@768x512c1"]["settings"]
    assert (shaped["width"], shaped["height"], shaped["controls"]) == (768, 512, 1)
    same = ("batch", "accumulation", "compile", "split_attn")  # the fake has no GPU: auto is the house's
    assert [shaped[k] for k in same] == [variants["auto"]["settings"][k] for k in same]
    assert variants["nosplit"]["settings"]["split_attn"] is False
    assert variants["tf32"]["settings"]["options"] == ["cuda_allow_tf32"]

    fold_speed = benchmark_module("fold_speed")
    result["card"] = "NVIDIA H200, 143771 MiB, 580.159.04"
    result["date"] = "2099-01-01T00:00:00Z"  # a source the real measurements cannot hold yet (today's may)
    data = json.loads(fold_speed.MEASUREMENTS.read_text(encoding="utf-8"))
    folded, left = fold_speed.fold(data, result)
    new = [row for row in folded["rows"] if row["source"] == fold_speed.source_name(result)]
    assert len(new) == len(variants) and not left
    assert all(row["gpu"] == "h200" and row["s_per_step"] for row in new)
    assert {(row.get("width"), row.get("controls")) for row in new} >= {(768, 1), (640, None)}
    assert json.loads(fold_speed.dumps(folded)) == folded  # one row per line, same data
    again, _ = fold_speed.fold(folded, result)
    assert len(again["rows"]) == len(folded["rows"])  # folding twice replaces, never duplicates


def test_the_profile_stage_trains_nosplit_with_the_hook_and_writes_its_table(tmp_path: Path) -> None:
    """`preset_speed.py profile` (issue 21's profiler run, against the fake): the compiled setting
    without split_attn trains 4 steps with benchmarks/profile_hook first on PYTHONPATH and the
    profiler's environment, which reach the training process through fplora; the export the hook
    writes there becomes $OUT's table, text and JSON."""
    import json

    root = tmp_path / "r"
    _run_fake("preset_speed", root, "install", "weights", "data", "cache", "profile")
    out = root / "out"
    result = json.loads((out / "profile-nosplit.json").read_text())
    assert result["raw"]["fake"] == {"hook_installed": True}
    assert result["raw"]["step"] == result["profiled_step"] == 3
    settings = result["settings"]
    assert settings["split_attn"] is False and settings["compile"] and settings["batch"] == 1
    assert set(result["s_per_step_each"]) == {"2", "3", "4"}  # steps 2 and 4 unprofiled
    table = result["table"]
    assert set(table["groups"]) == {
        "attention",
        "gemm",
        "optimizer",
        "elementwise_norm",
        "memcpy",
        "data",
        "other",
    }
    assert len(table["top"]) == 30
    text = (out / "profile.txt").read_text()
    assert text.startswith("== profile-nosplit: the h200 preset without split_attn")
    assert "optimizer step 3 on cpu" in text and "gemm" in text and "lever" in text
    config = (root / "configs" / "profile-nosplit" / "config.toml").read_text()
    assert "max_train_steps = 4" in config


def _profile_table() -> object:
    return benchmark_module("harness.profile_table")


def test_the_profile_table_of_the_cpu_proof_attributes_the_optimizer_step_and_the_matmuls() -> None:
    """The export the hook wrote around step 2 of a real CPU rehearsal (musubi-tuner's loop, the
    stand-in DiT, adamw8bit): every op lands in one group, the optimizer's ops are the ones under
    `Optimizer.step#`, and the matmuls top the list."""
    table_mod = _profile_table()
    raw = json.loads((REPO / "benchmarks" / "results" / "2026-12-06-cpu-profile-raw.json").read_text())
    table = table_mod.summarise(raw)  # type: ignore[attr-defined]
    assert table["basis"] == "cpu" and "gpu" not in table
    groups = table["groups"]
    assert abs(sum(g["s"] for g in groups.values()) - table["work_s"]) < 1e-3
    (step,) = table["host"]["optimizer_step"]
    assert step["name"] == "Optimizer.step#AdamW8bit.step"
    assert abs(groups["optimizer"]["s"] - step["cpu_s"]) / step["cpu_s"] < 0.05  # its ops, all of them
    assert table["top"][0] == {**table["top"][0], "name": "aten::mm", "group": "gemm"}
    assert groups["attention"]["s"] > 0 and groups["data"]["count"] > 0
    assert set(table["phases"]) == {"forward", "backward", "optimizer", "data"}


def test_the_h100_profile_leaves_out_the_profilers_own_window_it_counted_as_a_kernel() -> None:
    """The H100 export of 2026-12-06 (protocol 1) held the device-side twin of the hook's window range
    as work `(no host op)` as long as the step (19.4 s of "kernels" in a 10.2-s window, GPU "100 %
    busy"): the table drops the twins, keeps the real kernels' 9.2 s, and says the busy time is unknown."""
    import json

    table_mod = _profile_table()
    returned = json.loads((REPO / "benchmarks/results/2026-12-06-h100-profile-nosplit.json").read_text())
    table = table_mod.summarise(returned["raw"])  # type: ignore[attr-defined]
    assert table["work_s"] == pytest.approx(9.198, abs=0.01)
    assert table["groups"]["other"]["s"] < 0.01 and "gpu" not in table
    assert "counted the profiler's own window" in table["gpu_unreliable"]
    assert all(
        "fplora_profile" not in t["name"] and not t["name"].startswith("Optimizer.") for t in table["top"]
    )
    assert "GPU timeline: this export (protocol 1)" in table_mod.render(table)  # type: ignore[attr-defined]


def test_the_profile_table_groups_gpu_kernels_and_reports_the_gpus_idle_time() -> None:
    """A GPU-shaped export (kernel names as H100 runs show them): each kernel lands in the group of
    the lever it points to, the optimizer by its scope, and the idle share is the window's rest."""
    table_mod = _profile_table()
    work = [
        (
            "flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4>>",
            "aten::_flash_attention_forward",
            "",
            4e6,
        ),
        ("flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel", "aten::_flash_attention_backward", "backward", 6e6),
        ("nvjet_tst_256x128_64x4_1x2_h_bz_coopA_TNN", "aten::mm", "", 9e6),
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n", "aten::addmm", "backward", 5e6),
        ("triton_poi_fused_add_mul_native_layer_norm_0", "## Call CompiledFxGraph f1 ##", "", 2e6),
        (
            "void kOptimizerStatic8bit2StateBlockwise<__nv_bfloat16, 2048, 8>",
            "bitsandbytes::optimizer_update_8bit_blockwise",
            "optimizer",
            0.5e6,
        ),
        ("void at::native::vectorized_elementwise_kernel<4>", "aten::add_", "optimizer", 0.1e6),
        ("Memcpy HtoD (Pageable -> Device)", "aten::copy_", "", 0.2e6),
    ]
    raw = {
        "step": 3,
        "window_s": 30.0,
        "basis": "device",
        "device": "NVIDIA H100 80GB HBM3",
        "torch": "2.11.0",
        "work": [{"name": n, "launcher": by, "scope": s, "count": 10, "us": us} for n, by, s, us in work],
        "rows": [
            {
                "name": "cudaStreamSynchronize",
                "device_type": "CPU",
                "count": 17,
                "self_cpu_us": 1e5,
                "cpu_total_us": 1e5,
                "self_device_us": 0,
                "device_total_us": 0,
            },
            {
                "name": "Optimizer.step#AdamW8bit.step",
                "device_type": "CPU",
                "count": 1,
                "self_cpu_us": 1e3,
                "cpu_total_us": 4e5,
                "self_device_us": 0,
                "device_total_us": 6e5,
            },
        ],
        "gpu": {
            "window_us": 30e6,
            "busy_us": 26.8e6,
            "kernels": 80,
            "gaps": {">=1ms": {"count": 16, "us": 3.2e6}},
            "longest_gaps": [
                {
                    "at_us": 1e6,
                    "us": 2e5,
                    "after_kernel": "a",
                    "before_kernel": "b",
                    "host_op": "cudaStreamSynchronize",
                    "host_stack": [],
                }
            ],
        },
    }
    table = table_mod.summarise(raw)  # type: ignore[attr-defined]
    seconds = {name: g["s"] for name, g in table["groups"].items()}
    assert seconds == {
        "attention": 10.0,
        "gemm": 14.0,
        "optimizer": 0.6,
        "elementwise_norm": 2.0,
        "memcpy": 0.2,
        "data": 0.0,
        "other": 0.0,
    }
    assert table["gpu"]["busy_share"] == round(26.8 / 30, 4) and table["gpu"]["idle_s"] == 3.2
    assert table["host"]["syncs"] == {"cudaStreamSynchronize": {"count": 17, "cpu_s": 0.1}}
    assert table["host"]["optimizer_step"][0]["device_s"] == 0.6
    assert table["phases"]["backward"]["s"] == 11.0
    text = table_mod.render(table)  # type: ignore[attr-defined]
    assert "GPU busy 26.800 s (89.3% of the window), idle 3.200 s" in text
    assert "host in cudaStreamSynchronize" in text and "cudaStreamSynchronize x17 0.100 s" in text


def test_the_profile_hook_finds_the_gpus_busy_time_and_what_the_host_did_in_its_gaps() -> None:
    """The hook's timeline (in the training process, over torch's events): kernels on two streams
    overlap, so busy time is their union; the gaps are the window's rest, the longest named by the
    innermost host op running at its middle."""
    hook = benchmark_module("fplora_profile", under="profile_hook")

    def host(name: str, start: float, end: float) -> SimpleNamespace:
        return SimpleNamespace(name=name, time_range=SimpleNamespace(start=start, end=end))

    device = [
        (100.0, 400.0, "gemm"),
        (300.0, 500.0, "copy"),
        (2500.0, 2600.0, "flash"),
        (2600.0, 2900.0, "gemm"),
    ]
    events = [
        host(hook.WINDOW, 0.0, 3000.0),
        host("aten::item", 900.0, 2400.0),
        host("cudaStreamSynchronize", 950.0, 2390.0),
    ]
    gpu = hook._timeline(0.0, 3000.0, device, events)
    assert gpu["busy_us"] == 400 + 400 and gpu["window_us"] == 3000 and gpu["kernels"] == 4
    assert gpu["gaps"][">=1ms"] == {"count": 1, "us": 2000.0}
    longest = gpu["longest_gaps"][0]
    assert (longest["at_us"], longest["us"], longest["after_kernel"], longest["before_kernel"]) == (
        500,
        2000,
        "copy",
        "flash",
    )
    assert longest["host_op"] == "cudaStreamSynchronize" and longest["host_stack"] == [
        "aten::item",
        "cudaStreamSynchronize",
    ]


def test_the_profile_hook_keeps_device_work_that_no_host_op_launched() -> None:
    """Kernels torch attached to a host op keep their launcher; the rest of what the device ran (here a
    second, unattached launch of the same kernel and a copy) is counted under `(no host op)`."""
    hook = benchmark_module("fplora_profile", under="profile_hook")
    work = {("triton_poi_fused_0", "## Call CompiledFxGraph ##", ""): [1, 5.0]}
    hook._unlinked(
        work,
        [(0.0, 5.0, "triton_poi_fused_0"), (10.0, 17.0, "triton_poi_fused_0"), (20.0, 21.0, "Memcpy DtoD")],
    )
    assert work == {
        ("triton_poi_fused_0", "## Call CompiledFxGraph ##", ""): [1, 5.0],
        ("triton_poi_fused_0", "(no host op)", ""): [1, 7.0],
        ("Memcpy DtoD", "(no host op)", ""): [1, 1.0],
    }


def test_fold_keeps_an_out_of_memory_variant_and_refuses_to_replace_another_runs_rows() -> None:
    """2026-12-06's H100 shapes: the house settings at 640x640 ran out of memory at step 1. fold_speed
    records it as issue 12's cells are kept (s/step and peak null, "out of memory" in the note and the
    table); a variant that failed otherwise is left out and listed. A second run on the same day and
    card must not silently replace the first run's rows: it is refused until named with --source."""
    import json

    fold_speed = benchmark_module("fold_speed")
    data = json.loads(fold_speed.MEASUREMENTS.read_text(encoding="utf-8"))
    settings = {
        "batch": 16,
        "accumulation": 1,
        "blocks_to_swap": 20,
        "gradient_checkpointing": True,
        "compile": False,
        "split_attn": True,
        "width": 640,
        "height": 640,
        "controls": 2,
        "options": [],
    }
    result = {
        "date": "2027-01-02T03:04:05Z",
        "card": "NVIDIA H100 80GB HBM3, 81559 MiB, 580.159.04",
        "versions": {"torch": "2.11.0"},
        "variants": {
            "memo@640x640c2": {
                "what": "the house",
                "settings": settings,
                "rc": 1,
                "oom": True,
                "peak_MiB_run": 81077,
            },
            "broken": {"what": "x", "settings": settings, "rc": 2, "oom": False},
        },
    }
    folded, left = fold_speed.fold(data, result)
    (row,) = [r for r in folded["rows"] if r["source"] == "preset-speed-2027-01-02-h100-80g"]
    assert (row["s_per_step"], row["peak_mib"], row["width"], row["blocks_to_swap"]) == (None, None, 640, 20)
    assert row["note"].endswith("; out of memory (nvidia-smi saw 81,077 MiB)")
    assert left == ["broken: rc 2"]
    line = [t for t in fold_speed.table(folded).splitlines() if "preset-speed-2027-01-02" in t]
    assert line and "| out of memory |" in line[0] and "640x640, 2 controls" in line[0]

    later = {**result, "date": "2027-01-02T09:00:00Z"}
    with pytest.raises(
        SystemExit,
        match=re.escape(
            "already holds the rows of another run (2027-01-02T03:04:05Z); fold this one under its own"
            " name: --source preset-speed-2027-01-02-h100-80g-"
        ),
    ):
        fold_speed.fold(folded, later)
    both, _ = fold_speed.fold(folded, later, "preset-speed-2027-01-02-h100-80g-shapes")
    assert [r["source"] for r in both["rows"]].count("preset-speed-2027-01-02-h100-80g") == 1
    assert both["sources"]["preset-speed-2027-01-02-h100-80g-shapes"]["run"] == later["date"]


def test_past_the_deadline_a_stage_that_costs_nothing_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU call whose last training stage runs to the deadline still writes its report (2026-12-06:
    speed-report was skipped after the autotune stage, and the call's results file was lost)."""
    h = _harness()
    cfg = h.state.Config(
        root=tmp_path / "root",
        models=tmp_path / "models",
        out=tmp_path / "out",
        deadline=0.0,
        gpus=1,
        gpus_seen=1,
        e2e_batch=1,
        e2e_swap=0,
        timing_steps=3,
        train2_steps=1,
        records=2,
        local=None,
    )
    monkeypatch.setattr(h.state, "CFG", cfg, raising=False)
    monkeypatch.setattr(h.state, "GPU", None, raising=False)
    monkeypatch.setattr(h.state, "SUMMARY", {"stages": []})
    ran: list[str] = []
    stages = {
        "slow": h.state.Stage(lambda stage, checks: ran.append("slow"), 60),
        "report": h.state.Stage(lambda stage, checks: ran.append("report"), 0),
    }
    monkeypatch.setattr(h.driver, "STAGES", {**h.driver.STAGES, **stages})
    h.driver.do_stage("slow")
    h.driver.do_stage("report")
    assert ran == ["report"]
    summary = json.loads((cfg.out / "summary.json").read_text())
    assert summary["stages"][0]["skipped"].startswith("not started: needs ~60 s")
    assert summary["stages"][1]["stage"] == "report"
