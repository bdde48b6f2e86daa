#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what the tests need (a Python with
# pyarrow and DuckDB for the independent readers), then runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -- NAME    # only tests whose name contains NAME
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "Python readers (pyarrow, DuckDB) in .venv"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import pyarrow, duckdb' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
export SLUICE_PYTHON="$PWD/.venv/bin/python"

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tests"
cargo test --workspace --all-targets "$@"
