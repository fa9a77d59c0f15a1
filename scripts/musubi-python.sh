#!/usr/bin/env bash
# Builds, idempotently, the CPU musubi-tuner Python: a venv with CPU-usable torch, musubi-tuner's pinned
# dependencies and the pinned musubi-tuner source on its path. `fplora rehearse` and the tests marked
# `musubi` run musubi-tuner's real code in it (with tiny stand-in models), so that no GPU and no model
# file is needed to learn whether a spec's commands run.
#
#   scripts/musubi-python.sh [--venv DIR] [--source TARBALL] [--fresh]
#
#   --venv DIR        where the venv goes (default /tmp/fplora-musubi-venv)
#   --source TARBALL  the pinned musubi-tuner source, `git archive` of its commit (default: the one
#                     in ../shared/musubi-tuner/ beside this repo, as CI has it)
#   --fresh           remove DIR first
#
# Afterwards: FPLORA_MUSUBI_PYTHON=DIR/bin/python. The venv is remade when the source, the pins or this
# script change (a stamp file records them); otherwise the call returns at once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
venv=/tmp/fplora-musubi-venv source="" fresh=0
while [ $# -gt 0 ]; do
  case $1 in
    --venv) venv=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "musubi-python.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
say() { echo "musubi-python.sh: $*" >&2; }

if [ -z "$source" ]; then
  source=$(ls "$repo"/../shared/musubi-tuner/musubi-tuner-src-*.tar.gz 2>/dev/null | head -n 1 || true)
  if [ -z "$source" ]; then
    say "no musubi-tuner source tarball in $repo/../shared/musubi-tuner/ — pass --source PATH"
    exit 2
  fi
fi
[ -f "$source" ] || { say "$source: not found"; exit 2; }
source=$(cd "$(dirname "$source")" && pwd)/$(basename "$source")

# the commit fplora's bundled schema was read from; the tarball's COMMIT file must name the same one
pinned=$(sed -n 's/.*"musubi_tuner_commit": *"\([0-9a-f]*\)".*/\1/p' "$repo/src/fplora/musubi/schema.json" | head -n 1)
commit_file=$(dirname "$source")/COMMIT
if [ -f "$commit_file" ]; then
  commit=$(tr -d '[:space:]' <"$commit_file")
  if [ "$commit" != "$pinned" ]; then
    say "$source is musubi-tuner $commit, but fplora pins $pinned (src/fplora/musubi/schema.json)"
    exit 1
  fi
else
  case $(basename "$source") in
    *"${pinned:0:8}"*) commit=$pinned ;;
    *) say "no COMMIT file beside $source and its name does not carry ${pinned:0:8}: cannot tell its commit"; exit 1 ;;
  esac
fi

constraints=$here/musubi-constraints.txt
stamp_want="$pinned $(sha256sum "$source" "$constraints" "$0" | cut -c1-16 | tr '\n' ' ')"
stamp=$venv/.fplora-musubi-python
if [ "$fresh" = 1 ]; then rm -rf "$venv"; fi
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$stamp_want" ]; then
  echo "$venv/bin/python"
  exit 0
fi

started=$SECONDS
rm -rf "$venv"
uv venv -q --python 3.11 "$venv"
mkdir -p "$venv/musubi-tuner"
tar -xzf "$source" -C "$venv/musubi-tuner"
echo "$commit" >"$venv/musubi-tuner/COMMIT"

# musubi-tuner's own dependency pins, read from its pyproject.toml; OpenCV as its headless build (the
# same code without the GUI libraries, which a CI machine lacks: libGL)
requirements=$venv/requirements.txt
python3 - "$venv/musubi-tuner/pyproject.toml" >"$requirements" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as handle:
    deps = tomllib.load(handle)["project"]["dependencies"]
for dep in deps:
    print(dep.replace("opencv-python==", "opencv-python-headless=="))
PY
# torch and torchvision from PyPI as a pair (PyPI's torchvision links against PyPI's torch), and wandb
# (fplora's base.yaml logs to it; the rehearsal runs it offline); the
# constraints pin what musubi-tuner leaves open (torch, bitsandbytes) and the transitive versions
uv pip install -q --python "$venv/bin/python" -c "$constraints" -r "$requirements" torch torchvision wandb
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$venv/musubi-tuner/src" >"$site/musubi_tuner_src.pth"
"$venv/bin/python" -c 'import torch, torchvision, accelerate, wandb, musubi_tuner' >/dev/null
echo "$stamp_want" >"$stamp"
say "built $venv in $((SECONDS - started)) s (musubi-tuner ${commit:0:8}, torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'))"
echo "$venv/bin/python"
