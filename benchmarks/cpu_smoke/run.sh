#!/usr/bin/env bash
# CPU smoke test of fplora's workers against the pinned musubi-tuner (see README.md).
#
#   benchmarks/cpu_smoke/run.sh [--work DIR] [--venv PATH] [--carry DIR] [--fidelity] [--fresh]
#
#   --work DIR    where everything is made (default /tmp/fplora-cpu-smoke); project, models, caches
#                 and outputs are made anew on every run, the venv in DIR/venv is kept between runs
#                 while requirements.txt is unchanged
#   --venv PATH   use this existing venv instead (it must hold requirements.txt's packages)
#   --carry DIR   the folder holding .musubi/ and .whl/ (default: this repo's root)
#   --fidelity    also run every sweep cell as a separate fpack_generate_video run and compare
#   --fresh       remove DIR/venv first
#
# Prints one "OK <check>" or "FAIL <check>" line per check; exit code 0 when all hold.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=/tmp/fplora-cpu-smoke venv="" carry=$repo fidelity=0 fresh=0
while [ $# -gt 0 ]; do
  case $1 in
    --work) work=$2; shift 2 ;;
    --venv) venv=$2; shift 2 ;;
    --carry) carry=$2; shift 2 ;;
    --fidelity) fidelity=1; shift ;;
    --fresh) fresh=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$work" && work=$(cd "$work" && pwd)
logs=$work/logs
rm -rf "$logs" "$work/proj" "$work/models" "$work/out" "$work/musubi"
mkdir -p "$logs"
started=$SECONDS failures=0

check() {  # check NAME COMMAND...: one OK/FAIL line, the command's output in logs/NAME.out
  local name=$1 t0=$SECONDS; shift
  if "$@" >"$logs/$name.out" 2>&1; then
    echo "OK   $name ($((SECONDS - t0)) s): $(tail -n 1 "$logs/$name.out")"
  else
    failures=$((failures + 1))
    echo "FAIL $name ($((SECONDS - t0)) s): $(tail -n 1 "$logs/$name.out") [log: $logs/$name.out]"
    return 1
  fi
}

make_venv() {
  local stamp req_hash torch_whl vision_whl
  req_hash=$(sha256sum "$here/requirements.txt" | cut -c1-16)
  stamp=$venv/.fplora-cpu-smoke
  if [ "$fresh" = 1 ]; then rm -rf "$venv"; fi
  if [ "$(cat "$stamp" 2>/dev/null)" = "$req_hash" ]; then
    # fplora itself from this checkout: the venv may have been made by another one (a worktree since removed)
    uv pip install -q --python "$venv/bin/python" --no-deps -e "$repo" || return 1
    echo "reusing $venv"; return 0
  fi
  rm -rf "$venv"
  uv venv -q --python "${PYTHON:-3.11}" "$venv" || return 1
  # torch and torchvision must come as a pair: PyPI's torchvision links against CUDA torch's
  # libraries, so a local CPU torch wheel is used only with a local torchvision wheel beside it
  torch_whl=$(ls /opt/wheels/torch-*.whl 2>/dev/null | head -n 1)
  vision_whl=$(ls /opt/wheels/torchvision-*.whl 2>/dev/null | head -n 1)
  if [ -n "$torch_whl" ] && [ -n "$vision_whl" ]; then
    uv pip install -q --python "$venv/bin/python" "$torch_whl" "$vision_whl" || return 1
  else
    uv pip install -q --python "$venv/bin/python" -c "$here/requirements.txt" \
      $(grep -E '^torch(vision)?==' "$here/requirements.txt") || return 1
  fi
  local links=()
  [ -d "$carry/.whl" ] && links=(--find-links "$carry/.whl")
  grep -v -E '^torch(vision)?==' "$here/requirements.txt" >"$work/requirements-rest.txt"
  uv pip install -q --python "$venv/bin/python" --no-deps "${links[@]}" -r "$work/requirements-rest.txt" || return 1
  uv pip install -q --python "$venv/bin/python" --no-deps -e "$repo" || return 1
  echo "$req_hash" >"$stamp"
  echo "made $venv ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
}

unpack_musubi() {
  local tarball=$carry/.musubi/musubi-tuner-src.tar.gz pinned
  if [ ! -f "$tarball" ]; then
    echo "no $tarball: make it with bash benchmarks/gpu_setup/prepare.sh (docs/gpu-e2e.md)"; return 1
  fi
  mkdir -p "$work/musubi" && tar -xzf "$tarball" -C "$work/musubi" || return 1
  pinned=$("$py" -c 'from fplora.musubi import schema; print(schema.pinned_commit())') || return 1
  if [ -f "$carry/.musubi/COMMIT" ] && [ "$(cat "$carry/.musubi/COMMIT")" != "$pinned" ]; then
    echo "the tarball is musubi-tuner $(cat "$carry/.musubi/COMMIT"), fplora pins $pinned"; return 1
  fi
  echo "musubi-tuner $pinned unpacked"
}

if [ -n "$venv" ]; then
  reuse() { [ -x "$venv/bin/python" ] && echo "using the given venv $venv"; }
  check venv reuse || exit 1
else
  venv=$work/venv
  check venv make_venv || exit 1
fi
py=$venv/bin/python
check musubi unpack_musubi || exit 1

# every Python below, and those accelerate starts, sees the stand-ins (site/) and musubi-tuner
export PYTHONPATH=$here/site:$work/musubi/src FPLORA_CPU_SMOKE=1 FPLORA_MODELS_DIR=$work/models
export FPLORA_MUSUBI_PYTHON=$py PYTHONHASHSEED=0 CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1
step() { "$py" "$here/smoke.py" "$1" --work "$work"; }

check setup step setup || exit 1
check cache step cache
check sweep-args step sweep-args
check eval step eval && check eval-batched step eval-batched && check eval-compiled step eval-compiled
check sweep step sweep
if [ "$fidelity" = 1 ]; then
  # as musubi-tuner runs: the VAE posterior is sampled from a generator torch seeds at random
  check separate step separate && check fidelity-unseeded step compare-report
  # controlled: that generator seeded once per process, so only the pipelines can differ
  export FPLORA_CPU_SMOKE_VAE_SEED=0
  check sweep-seeded step sweep && check separate-seeded step separate && check fidelity step compare
  unset FPLORA_CPU_SMOKE_VAE_SEED
fi
echo "$([ $failures = 0 ] && echo OK || echo FAIL): $failures failed, $((SECONDS - started)) s; logs in $logs"
[ $failures = 0 ]
