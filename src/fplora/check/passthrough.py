"""Files named by pass-through options (`musubi.config.network_weights`, ...) must exist.

fplora renders these options verbatim; musubi-tuner opens them only after loading the models, so a
typo would cost minutes of GPU time. Relative paths are read as musubi-tuner reads them: from the
directory the command runs in.
"""

from __future__ import annotations

from pathlib import Path

from fplora.musubi.names import PASS_THROUGH_INPUTS
from fplora.problems import Problem, display_path
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
    return problems
