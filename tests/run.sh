#!/usr/bin/env bash
# The test command (README "Tests"): the house style (ruff), the library with pytest, the built book opened in a
# browser, then every chapter executed with nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
# The book's notebooks are left out of ruff, like notebooks/; its scripts are not.
ruff check udalib tests benchmarks book/*.py
ruff format --check udalib tests benchmarks book/*.py
python -m pytest tests -q --ignore tests/test_book_site.py
# Its own step, so its time shows: book/build.py --fast, then book/check_site.py on every page (a few minutes).
python -m pytest tests/test_book_site.py -q
python -m pytest --nbval-lax --nbval-current-env -p no:python notebooks/ -q
