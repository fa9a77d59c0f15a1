#!/usr/bin/env bash
# install.sh - run THERE (the GPU machine), from the repo root, with the carried folders that
# prepare.sh made: .whl (.whl2 when carried) and .musubi. Idempotent: a warm machine that already has
# /tmp/site and /tmp/musubi at the carried commit is left as it is. Prints the export a caller must
# `eval` (the harness's install stage sets it itself).
#   pip --target /tmp/site : the carried wheels (no index, no deps: the image provides the rest), .whl3's
#                            too when carried (fplora's own dependencies, for running fplora from src/);
#                            without .whl2 a PyAV stub (/tmp/site/av) that fails only when video is written
#   /tmp/musubi/src        : musubi-tuner's source from .musubi/musubi-tuner-src.tar.gz, put on PYTHONPATH
#                            (not pip-installed: `python -m musubi_tuner.<script>` needs only the path)
set -euo pipefail
for need in .whl .musubi/musubi-tuner-src.tar.gz .musubi/COMMIT; do
  [ -e "$need" ] || { echo "install.sh: no $need: carry what benchmarks/gpu_setup/prepare.sh made" >&2; exit 1; }
done
if [ ! -f /tmp/site/.e2e-installed ]; then
  whls=(.whl/*.whl)
  [ -d .whl2 ] && whls+=(.whl2/*.whl)
  [ -d .whl3 ] && whls+=(.whl3/*.whl)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "${whls[@]}" >&2
  touch /tmp/site/.e2e-installed
fi
if [ ! -d .whl2 ] && [ ! -e /tmp/site/av ]; then
  # musubi-tuner imports PyAV at import time (dataset/media_utils.py) but uses it only for video; without
  # the 34 MB .whl2 (little room in a call's 64 MiB) a stub stands in that fails only when used
  mkdir -p /tmp/site/av
  cat >/tmp/site/av/__init__.py <<'STUB'
def _missing(*a, **k):
    raise RuntimeError('PyAV stub (benchmarks): video needs the av wheel')
open = _missing
class VideoFrame:
    from_ndarray = from_image = staticmethod(_missing)
__version__ = '0.0.0+stub'
STUB
fi
if [ "$(cat /tmp/musubi/COMMIT 2>/dev/null)" != "$(cat .musubi/COMMIT)" ]; then
  rm -rf /tmp/musubi && mkdir -p /tmp/musubi
  tar -xzf .musubi/musubi-tuner-src.tar.gz -C /tmp/musubi
  cp .musubi/COMMIT /tmp/musubi/COMMIT
fi
if [ ! -f /tmp/site/.e2e-compiled ] || [ /tmp/musubi/COMMIT -nt /tmp/site/.e2e-compiled ]; then
  # bytecode, as a user's `pip install` leaves it: the wheels went in --no-compile and the source is
  # unpacked, so under PYTHONDONTWRITEBYTECODE every process (each rehearsal, each musubi-tuner
  # script) would compile transformers, diffusers and musubi-tuner from source again (seconds each)
  python3 -m compileall -q -j 0 /tmp/site /tmp/musubi/src >/dev/null 2>&1 || true
  touch /tmp/site/.e2e-compiled
fi
echo "export PYTHONPATH=/tmp/site:/tmp/musubi/src${PYTHONPATH:+:$PYTHONPATH}"
