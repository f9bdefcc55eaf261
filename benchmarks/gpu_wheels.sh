#!/usr/bin/env bash
# Download, HERE (where pip reaches PyPI), the wheels that the device machine lacks for benchmarks/gpu_session.sh.
# The device machine (H100/H200, Python 3.12, torch/triton/numpy/scipy preinstalled) reaches no package registry:
# the wheels travel in the ignored folder .whl (name it in the device call's `carry`). 64 MiB per call in all.
# Usage (repo root): bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
mkdir -p .whl
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64)
PIP=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
     "${PLAT[@]}" -d .whl)
# the test extra's references and the CLI's needs (torch, triton, numpy, scipy, pillow, huggingface_hub,
# safetensors, torchvision, tqdm, torchmetrics are on the device image); exact versions: those of the CPU venv
"${PIP[@]}" monai==1.6.1 hypothesis==6.170.27 sortedcontainers attrs pytest-xdist==3.8.0 execnet==2.1.2 \
    typer==0.29.2 click shellingham rich==15.0.0 markdown-it-py mdurl pygments optuna==5.1.0 alembic==1.20.1 \
    SQLAlchemy==2.1.9 greenlet Mako colorlog==6.12.0 nibabel==5.4.2 tifffile \
    timm segmentation-models-pytorch==0.6.0 kornia==0.9.0 kornia_rs matplotlib==3.11.2 contourpy cycler \
    fonttools kiwisolver pyparsing python-dateutil six pytest==9.2.0 pluggy iniconfig
# pure-Python packages published as source only: build their wheels here
python3 -m pip wheel -q --no-deps -w .whl surface-distance medpy==0.5.2
du -sh .whl
