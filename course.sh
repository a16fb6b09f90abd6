#!/usr/bin/env bash
# The project's two commands. Each sets everything up first (idempotent), then runs its job.
#
#   ./course.sh build   build the course into build/ (execute notebooks, render slides, ...)
#   ./course.sh test    lint and run the test suite (this is what CI runs)
#
# Needs only Python >= 3.10 (3.11 for nbgrader) and the package registries.
# Environment: PYTHON (interpreter for the venv, default python3), COURSEKIT_VENV (default .venv),
# TORCH_SPEC (default torch==2.13.0; e.g. a CUDA build's spec on a GPU machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=${COURSEKIT_VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

# Grading runs each submission's kernel in bubblewrap (see README, "Grading safely"); PDF
# handouts, screenshots and the browser tests use Chromium. As root on Debian the tools come
# from apt; elsewhere a missing bwrap only disables grading, a missing chromium the browser.
system_tools() {
  command -v bwrap >/dev/null && command -v setpriv >/dev/null && command -v chromium >/dev/null &&
    return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    local packages="bubblewrap util-linux python3-venv chromium"
    apt-get install -y -qq --no-install-recommends $packages >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $packages >/dev/null; }
  else
    command -v bwrap >/dev/null ||
      echo "course.sh: bwrap not found: install bubblewrap to grade submissions" >&2
    command -v chromium >/dev/null ||
      echo "course.sh: chromium not found: install it for PDF handouts and the browser tests" >&2
  fi
}

setup() {
  system_tools
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local py="$VENV/bin/python"
  # torch goes in first and pinned: pyproject.toml only asks for a range, and pip resolving a
  # bare range on a machine without torch would pull the newest CUDA build (gigabytes).
  "$py" -c "import torch" 2>/dev/null || "$py" -m pip install --quiet "$TORCH_SPEC"
  # The library alone is `pip install -e .`; the course (build, grading, JupyterLab) is the
  # `course` extra, the tests the `dev` extra.
  "$py" -m pip install --quiet -e ".[course,dev]"
  "$py" -m coursekit slides-assets
  # The course's JupyterLab neither asks to fetch Jupyter news nor checks for updates (nothing
  # leaves the machine): a settings override of this venv's Lab (tests/browser checks it).
  mkdir -p "$VENV/share/jupyter/lab/settings/overrides.d"
  echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
    >"$VENV/share/jupyter/lab/settings/overrides.d/coursekit.json"
  # As root, sandboxed kernels run as a dedicated user from a venv of their own.
  if [ "$(id -u)" = 0 ] && command -v bwrap >/dev/null; then
    "$py" -m coursekit sandbox-setup --torch "$TORCH_SPEC"
  fi
}

case "${1:-}" in
  build)
    shift
    setup
    exec "$VENV/bin/coursekit" build "$@"
    ;;
  test)
    shift
    setup
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    exec "$VENV/bin/pytest" "$@"
    ;;
  *)
    echo "usage: ./course.sh build|test [extra arguments]" >&2
    exit 2
    ;;
esac
