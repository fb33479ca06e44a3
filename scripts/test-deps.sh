#!/usr/bin/env bash
# What `make test` needs beyond Rust: system tools (Debian packages) and Python packages.
# Installs what is missing where it can (root, or passwordless sudo, for apt-get; a virtual
# environment under target/test-venv for Python), and otherwise says what is missing: the tests
# that need it then report SKIPPED in make test's summary (and fail under CI=true).
# `.ci/run` and `make test` both call this script.
set -uo pipefail
cd "$(dirname "$0")/.."

say() { echo "test-deps: $*" >&2; }

# --- Debian packages: tool → package -------------------------------------------------------------
# promtool checks the telemetry files (tests/telemetry.rs); ffprobe reads the videos and headless
# Chromium plays the review page (tests/video.rs); Slurm runs the array pipeline
# (tests/pipelines.rs); g++ compiles the CUDA kernels as C++ for the kernel emulator
# (tests/cuda_backend.rs); python3-venv makes the Python environment below.
declare -A pkg=(
  [promtool]=prometheus [ffprobe]=ffmpeg [chromium]=chromium
  [slurmctld]=slurm-wlm [munged]=munge [c++]=g++ [python3]=python3
)
missing=()
for tool in "${!pkg[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg[$tool]}")
done
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
  && ! python3 -m pip --version >/dev/null 2>&1; then
  missing+=(python3-venv python3-pip)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
  fi
  if [ "$sudo" = none ]; then
    say "missing Debian packages: ${missing[*]} (not root and no passwordless sudo, so not installed:"
    say "  sudo apt-get install ${missing[*]}); the tests that need them are SKIPPED"
  else
    say "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq >/dev/null || say "apt-get update failed"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null || say "apt-get install ${missing[*]} failed"
  fi
fi

# --- Python packages ---------------------------------------------------------------------------
# pyarrow, pandas and polars read the Parquet outputs (tests/python_readers.rs);
# carla-driver-interface (with grpcio) serves the policies of tests/external_driver.rs;
# nvidia-cuda-nvrtc-cu12 compiles the CUDA kernels without a GPU (tests/cuda_backend.rs).
modules="import pyarrow, pandas, polars, grpc, carla_driver_interface, nvidia.cuda_nvrtc"
packages="pyarrow pandas polars carla-driver-interface nvidia-cuda-nvrtc-cu12"
venv=target/test-venv
if ! command -v python3 >/dev/null 2>&1; then
  say "python3 not found: the Python reader and external-driver tests are SKIPPED"
elif python3 -c "$modules" >/dev/null 2>&1; then
  : # the Python on PATH has everything (a venv activated by make test comes first on PATH)
elif [ -x "$venv/bin/python3" ] && "$venv/bin/python3" -c "$modules" >/dev/null 2>&1; then
  :
else
  if [ ! -x "$venv/bin/python3" ]; then
    say "creating $venv (Python packages for the tests)"
    python3 -m venv "$venv" >/dev/null 2>&1 || { rm -rf "$venv"; say "python3 -m venv failed"; }
  fi
  if [ -x "$venv/bin/python3" ]; then
    say "installing into $venv: $packages"
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check $packages \
      || say "pip install into $venv failed: the tests that need these packages are SKIPPED"
  else
    say "no virtual environment possible; trying pip install --user"
    python3 -m pip install --quiet --user $packages 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages $packages \
      || say "pip install failed: the tests that need $packages are SKIPPED"
  fi
fi
exit 0
