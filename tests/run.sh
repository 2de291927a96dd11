#!/usr/bin/env bash
# The test command (README "Tests"): the library with pytest, then every chapter executed with nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest tests -q
python -m pytest --nbval-lax --nbval-current-env -p no:python notebooks/ -q
