#!/usr/bin/env bash
# The test command (README "Tests"): the house style (ruff), the library with pytest, then every chapter
# executed with nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check udalib tests benchmarks
ruff format --check udalib tests benchmarks
python -m pytest tests -q
python -m pytest --nbval-lax --nbval-current-env -p no:python notebooks/ -q
