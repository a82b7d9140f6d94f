#!/usr/bin/env bash
# Install the benchmark's own requirements into the current Python environment and run it.
# Usage: bash benchmarks/run.sh [--quick] [--json PATH] [other bench_engine.py options]
# Python: $PYTHON, else the active virtualenv's, else ./.venv's, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${PYTHON:-}" ]]; then
  py="$PYTHON"
elif [[ -n "${VIRTUAL_ENV:-}" ]]; then
  py="$VIRTUAL_ENV/bin/python"
elif [[ -x .venv/bin/python ]]; then
  py=.venv/bin/python
else
  py=python3
fi

torch_before=$("$py" -c 'import torch; print(torch.__version__)')
"$py" -m pip install --quiet -r benchmarks/requirements.txt
torch_after=$("$py" -c 'import torch; print(torch.__version__)')
if [[ "$torch_before" != "$torch_after" ]]; then
  echo "run.sh: installing the benchmark's requirements changed torch ($torch_before -> $torch_after)" >&2
  exit 1
fi

exec "$py" benchmarks/bench_engine.py "$@"
