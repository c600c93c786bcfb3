#!/usr/bin/env bash
# Prints the Python interpreter the launchers run the tools with (tools/dist_launch.sh, tools/slurm_launch.sh):
#   1. $PYTHON, when set;
#   2. the python of the active virtual or conda environment ($VIRTUAL_ENV, $CONDA_PREFIX), when it has torch;
#   3. the project's .venv/bin/python (what `make install` builds), when it exists;
#   4. the first of python3, python on PATH that has torch.
# Exits with status 1 and says what to do when none fits.
#   bash tools/find_python.sh
set -euo pipefail
if [ -n "${PYTHON:-}" ]; then
    echo "$PYTHON"
    exit 0
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
has_torch() {
    "$1" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)" >/dev/null 2>&1
}
for env in "${VIRTUAL_ENV:-}" "${CONDA_PREFIX:-}"; do
    if [ -n "$env" ] && [ -x "$env/bin/python" ] && has_torch "$env/bin/python"; then
        echo "$env/bin/python"
        exit 0
    fi
done
if [ -x "$root/.venv/bin/python" ] && has_torch "$root/.venv/bin/python"; then
    echo "$root/.venv/bin/python"
    exit 0
fi
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && has_torch "$candidate"; then
        command -v "$candidate"
        exit 0
    fi
done
echo "no Python with torch found (neither $root/.venv/bin/python nor python3 / python on PATH): run \`make install\`" \
    "or set PYTHON=/path/to/python" >&2
exit 1
