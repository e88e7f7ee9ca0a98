#!/usr/bin/env bash
# The GPU check in one command: python benchmarks/gpu_check.py with the same arguments (its --help says what it
# runs and which wheels to bring to a machine without network). Example:
#   bash benchmarks/gpu_check.sh --data-dir PATH/TO/multi30k --wheels PATH/TO/wheels --out gpu_check.json
exec python "$(dirname "$0")/gpu_check.py" "$@"
