#!/usr/bin/env bash
# The test command (README "Tests"): the house style (ruff), the fast tier, then the slow tier beside the book built
# with every chapter executed (the one place the chapters run) and every page opened in a browser. Each step says
# its time.
set -euo pipefail
cd "$(dirname "$0")/.."
step() {
    local name=$1 t0=$SECONDS
    shift
    "$@"
    echo "$name: $((SECONDS - t0)) s"
}
# The book's notebooks are left out of ruff, like notebooks/; its scripts are not.
step "ruff" bash -c 'ruff check udalib tests benchmarks book/*.py && ruff format --check udalib tests benchmarks book/*.py'
# What pyproject's addopts select: every test that takes seconds.
step "fast tests" python -m pytest -q
# The slow tier on two workers, one file per worker at a time (a module's fixtures are built once): the book
# (tests/test_book_site.py: book/build.py executes every page, the chapters' quick runs included, and fails on any
# cell error, timeout or Sphinx warning; then book/check_site.py opens each page in Chromium) holds one worker for
# most of the step while the other runs the paper path, DDP, the kill -9 and signal runs, the benchmarks.
step "slow tests and the book" python -m pytest -q -m slow -n 2 --dist loadfile --durations=15
