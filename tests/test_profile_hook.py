"""benchmarks/profile_hook on musubi-tuner's real training loop (CPU, the rehearsal's stand-in DiT).

Why: the hook is meant for one short GPU call (benchmarks/preset_speed.py's `profile` stage); if it did
not reach the training process, wrapped the wrong step or cut its window wrongly, that call would come
back without a table. Here `fplora rehearse` runs musubi-tuner's own training (accelerate, adamw8bit)
with the hook first on PYTHONPATH, as the stage puts it, and the export it writes is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.musubi
def test_the_hook_profiles_step_2_of_a_real_rehearsal_with_its_micro_batches_and_optimizer_inside(
    tmp_path: Path, musubi_python
) -> None:
    (tmp_path / "configs").mkdir()
    for name in ("base.yaml", "example.yaml"):
        shutil.copy(REPO / "configs" / name, tmp_path / "configs" / name)
    shutil.copytree(REPO / "datasets" / "example", tmp_path / "datasets" / "example")
    # two micro-batches per optimizer step, as the GPU's batch 1 x 16 (the example's 2 records make one
    # epoch of 2 batches, so the dataloader's end never forces a sync between them)
    accumulated = "extends: example.yaml\ndata:\n  batch_size: 1\ntrain:\n  gradient_accumulation_steps: 2\n"
    (tmp_path / "configs" / "accum.yaml").write_text(accumulated)
    out = tmp_path / "profile"
    paths = [str(REPO / "benchmarks" / "profile_hook"), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        **musubi_python.env,
        "FPLORA_MODELS_DIR": str(tmp_path / "no-models"),
        "PYTHONPATH": os.pathsep.join(filter(None, paths)),
        "FPLORA_PROFILE_OUT": str(out),
        "FPLORA_PROFILE_STEP": "2",  # the rehearsal trains 2 steps
    }
    done = subprocess.run(
        [sys.executable, "-m", "fplora", "rehearse", "configs/accum.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    log = (tmp_path / "configs" / "accum" / "rehearsal" / "rehearsal.log").read_text(errors="replace")
    assert "fplora-profile: profiling optimizer step 2 (CPU only)" in log
    raw = json.loads((out / "profile-raw.json").read_text())
    assert raw["step"] == 2 and raw["basis"] == "cpu" and raw["window_s"] > 0
    assert raw["trace"] == {"written": False, "why": "FPLORA_PROFILE_TRACE not set"}
    (step,) = [r for r in raw["rows"] if r["name"].startswith("Optimizer.step#")]
    under = sum(w["us"] for w in raw["work"] if w["scope"] == "optimizer")
    # the whole optimizer step is inside the window: its ops add up to its host time
    assert step["count"] == 1 and abs(under - step["cpu_total_us"]) / step["cpu_total_us"] < 0.05
    assert any(w["name"].startswith("bitsandbytes::") and w["scope"] == "optimizer" for w in raw["work"])
    assert any(w["scope"] == "backward" for w in raw["work"])
    # one optimizer step's window holds both of its micro-batches: two losses, two noise draws
    counts = {r["name"]: r["count"] for r in raw["rows"]}
    assert counts["aten::mse_loss"] == counts["aten::randn_like"] == 2


# torch's own event classes, as a CUDA run's profiler hands them over (no GPU here): a window with a
# GEMM, a host sync, the optimizer step's kernel and a kernel torch linked to no host op
CUDA_EVENTS = """
import json, sys
from torch.autograd import DeviceType
from torch.autograd.profiler_util import EventList, FunctionEvent

sys.path.insert(0, sys.argv[1])
import fplora_profile as hook

def cpu(i, name, start, end, parent=None):  # the parent is found by the tree, from the times
    return FunctionEvent(i, name, 1, start, end, stack=[], use_device="cuda")

def gpu(i, name, start, end):
    return FunctionEvent(i, name, 7, start, end, stack=[], use_device="cuda", device_type=DeviceType.CUDA)

window = cpu(1, hook.WINDOW, 0, 1000)
mm = cpu(2, "aten::mm", 100, 200, window)
mm.append_kernel("nvjet_tst_256x128", 0, 80)
sync = cpu(3, "cudaStreamSynchronize", 300, 550, window)
step = cpu(4, "Optimizer.step#AdamW8bit.step", 600, 900, window)
update = cpu(5, "bitsandbytes::optimizer_update_8bit_blockwise", 650, 700, step)
update.append_kernel("kOptimizerStatic8bit2StateBlockwise", 0, 30)
device = [gpu(6, "nvjet_tst_256x128", 120, 200), gpu(7, "kOptimizerStatic8bit2StateBlockwise", 660, 690),
          gpu(8, "triton_poi_fused_0", 210, 250),
          # the device-side twins of the two record_function ranges: annotations, never work
          gpu(9, hook.WINDOW, 0, 1000), gpu(10, "Optimizer.step#AdamW8bit.step", 600, 900)]
events = EventList([window, mm, sync, step, update, *device], use_device="cuda")
events._build_tree()

class Prof:
    def events(self):
        return events
    def key_averages(self):
        return events.key_averages()

print(json.dumps(hook._export(Prof(), 3, 0.001, cuda=True)))
"""


@pytest.mark.musubi
def test_the_hooks_cuda_export_attributes_kernels_and_names_the_host_op_in_the_longest_gap(
    musubi_python,
) -> None:
    done = subprocess.run(
        [musubi_python.python, "-c", CUDA_EVENTS, str(REPO / "benchmarks" / "profile_hook")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    assert raw["basis"] == "device" and raw["step"] == 3
    work = {(w["name"], w["launcher"], w["scope"]): (w["count"], w["us"]) for w in raw["work"]}
    assert work == {
        ("nvjet_tst_256x128", "aten::mm", ""): (1, 80.0),
        (
            "kOptimizerStatic8bit2StateBlockwise",
            "bitsandbytes::optimizer_update_8bit_blockwise",
            "optimizer",
        ): (1, 30.0),
        ("triton_poi_fused_0", "(no host op)", ""): (1, 40.0),
    }
    gpu = raw["gpu"]
    assert (gpu["window_us"], gpu["busy_us"], gpu["kernels"]) == (1000, 150, 3)
    longest = gpu["longest_gaps"][0]
    assert (longest["at_us"], longest["us"], longest["host_op"]) == (250, 410, "cudaStreamSynchronize")
    rows = {(r["name"], r["device_type"]): r for r in raw["rows"]}
    assert ("kOptimizerStatic8bit2StateBlockwise", "CUDA") in rows
    assert rows[("Optimizer.step#AdamW8bit.step", "CPU")]["device_total_us"] == 30
