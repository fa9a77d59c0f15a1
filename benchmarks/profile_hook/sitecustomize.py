"""Start-up hook of benchmarks/profile_hook/: with this folder first on PYTHONPATH, every Python runs
this file (the training process that `accelerate launch` starts included), which installs
`fplora_profile` when FPLORA_PROFILE_OUT is set and otherwise only passes on to the sitecustomize it
hides (one later on sys.path, such as the distribution's), so that nothing else changes.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

if os.environ.get("FPLORA_PROFILE_OUT"):
    import fplora_profile

    fplora_profile.install()


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as error:
        print(f"fplora-profile: the next sitecustomize ({spec.origin}) failed: {error}", file=sys.stderr)


_chain()
