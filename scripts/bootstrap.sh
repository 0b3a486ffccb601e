#!/usr/bin/env bash
# One-shot, idempotent set-up on a fresh machine: system libraries for headless
# OpenGL (EGL/Mesa), a virtual environment in .venv, torch and interp3d.
# Usage: bash scripts/bootstrap.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

# Headless rendering needs EGL + Mesa's software rasteriser (llvmpipe).
need_apt=0
for lib in libEGL.so.1 libEGL_mesa.so.0; do
  ldconfig -p | grep -q "$lib" || need_apt=1
done
[[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so || -e /usr/lib/aarch64-linux-gnu/dri/swrast_dri.so ]] || need_apt=1
if [[ $need_apt == 1 ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
  else
    echo "warning: EGL/Mesa libraries missing; install libegl1 libegl-mesa0 libgl1-mesa-dri for the renderer" >&2
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: 2.13.0 is the CPU wheel on disk; an unpinned torch would pull a CUDA build.
.venv/bin/python -m pip show torch >/dev/null 2>&1 || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".${extras}"
echo "interp3d ready: .venv/bin/interp3d"
