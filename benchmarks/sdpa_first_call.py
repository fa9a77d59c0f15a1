"""What scaled_dot_product_attention's first call at each new shape costs on this GPU, with the backend
torch picks and with cuDNN's attention switched off: the cost a rehearsal's stand-ins pay at every
caption length and latent size (docs/rehearsal.md).

Each setting runs in its own process (a backend's per-shape plans live for the process), over 20 new
token counts for each of the stand-ins' three kinds of attention: the VAE's (fp16, one head of 32
channels, a float mask), the token refiner's (bf16, one head of 128, a boolean mask) and the blocks'
(bf16, one head of 128, no mask, forward and backward). Prints one JSON object: the backend torch
chose for each kind, and the median first and repeated call in milliseconds.

    python3 benchmarks/sdpa_first_call.py [--out FILE]     # on a GPU machine, torch installed
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KINDS = {
    "vae fp16, float mask": ("float16", 32, "float", False),
    "refiner bf16, bool mask": ("bfloat16", 128, "bool", False),
    "blocks bf16, no mask, with backward": ("bfloat16", 128, None, True),
}
SHAPES = range(64, 64 + 8 * 20, 8)
"""20 token counts, each new to the process."""


def measure(cudnn: bool) -> dict[str, Any]:
    """The figures of one setting, in this process."""
    import torch

    torch.backends.cuda.enable_cudnn_sdp(cudnn)
    attention = torch.nn.functional.scaled_dot_product_attention
    device = torch.device("cuda")
    found: dict[str, Any] = {}

    def timed(call: Any) -> float:
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        call()
        torch.cuda.synchronize(device)
        return (time.perf_counter() - started) * 1000

    torch.zeros(1, device=device)  # the context, outside the figures
    for kind, (dtype_name, channels, mask_kind, backward) in KINDS.items():
        dtype = getattr(torch, dtype_name)
        first, again, chosen = [], [], set()
        for tokens in SHAPES:
            q = torch.randn(1, 1, tokens, channels, device=device, dtype=dtype, requires_grad=backward)
            mask = None
            if mask_kind == "float":
                mask = torch.zeros(1, tokens, tokens, device=device, dtype=dtype)
            elif mask_kind == "bool":
                mask = torch.ones(1, 1, tokens, tokens, device=device, dtype=torch.bool)
            try:
                chosen.add(_backend_name(torch, int(torch._fused_sdp_choice(q, q, q, attn_mask=mask))))
            except Exception as error:  # a private helper: its absence costs only the name
                chosen.add(f"unknown ({type(error).__name__})")

            def call(q: Any = q, mask: Any = mask, backward: bool = backward) -> None:
                out = attention(q, q, q, attn_mask=mask)
                if backward:
                    out.sum().backward()

            first.append(timed(call))
            again.append(timed(call))
        found[kind] = {
            "backend": sorted(chosen),
            "first_call_ms_median": round(statistics.median(first), 2),
            "first_call_ms_total": round(sum(first), 1),
            "repeat_ms_median": round(statistics.median(again), 3),
        }
    return found


def _backend_name(torch: Any, value: int) -> str:
    names = {int(v): k for k, v in torch.nn.attention.SDPBackend.__members__.items()}
    return names.get(value, str(value))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", choices=["on", "off"], help=argparse.SUPPRESS)  # a child's setting
    parser.add_argument("--out", type=Path)
    options = parser.parse_args()
    if options.one:
        print(json.dumps(measure(options.one == "on")))
        return 0
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    probe = (
        "import torch; print(torch.cuda.get_device_name(), torch.__version__, torch.backends.cudnn.version())"
    )
    result["card_torch_cudnn"] = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    ).stdout.strip()
    for setting, name in (("on", "torch's choice"), ("off", "cuDNN attention off")):
        done = subprocess.run(
            [sys.executable, __file__, "--one", setting], capture_output=True, text=True, check=False
        )
        result[name] = json.loads(done.stdout) if done.returncode == 0 else done.stderr[-2000:]
    text = json.dumps(result, indent=1)
    print(text)
    if options.out:
        options.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
