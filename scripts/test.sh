#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what the tests need (the C toolchain
# pieces librdkafka builds with, a Python with pyarrow and DuckDB for the independent readers,
# a real Apache Kafka broker and an S3 + Glue endpoint on loopback, the W2 harness's Go peer),
# then runs every test and stops the services it started.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -- NAME    # only tests whose name contains NAME
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "build tools for the bundled librdkafka (cmake, a C++ compiler, OpenSSL headers)"
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v c++ >/dev/null || missing+=(g++)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} (install them, e.g. apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

step "Python readers, servers and clients (pyarrow, DuckDB, boto3, moto, confluent-kafka) in .venv"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import pyarrow, duckdb, boto3, moto.server, confluent_kafka' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt -r benches/requirements.txt
fi
export SLUICE_PYTHON="$PWD/.venv/bin/python"

step "Kafka broker (scripts/kafka.sh), stopped when the tests end"
stop_services=()
cleanup() { for s in "${stop_services[@]}"; do "scripts/$s.sh" stop || true; done; }
trap cleanup EXIT
if scripts/kafka.sh status >/dev/null 2>&1; then
  echo "kafka: using the broker already running"
else
  scripts/kafka.sh start
  stop_services+=(kafka)
fi
export SLUICE_KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT:-19092}"
export SLUICE_REQUIRE_KAFKA=1

step "S3 + Glue + STS + KMS endpoint (scripts/moto.sh), stopped when the tests end"
if scripts/moto.sh status >/dev/null 2>&1; then
  echo "moto: using the server already running"
else
  scripts/moto.sh start
  stop_services+=(moto)
fi
export SLUICE_AWS_ENDPOINT="http://127.0.0.1:${MOTO_PORT:-5055}"
export SLUICE_REQUIRE_AWS=1

# The third-party event files beside the project (../shared/data) are read, never skipped.
export SLUICE_REQUIRE_SHARED=1

step "format"
cargo fmt --all -- --check

# W2's Go peer (the harness test runs it): built here, where a compile error, gofmt's diff, a
# vet finding or a failing test of its own stops the suite at once, rather than inside a test.
# Modules come from the Go module proxy on first use.
step "Go peer of the W2 harness (benches/gopeer): gofmt, go vet, go test, go build"
unformatted="$(gofmt -l benches/gopeer)"
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted (run gofmt -w benches/gopeer)" >&2
  exit 1
fi
(cd benches/gopeer && export GOFLAGS=-buildvcs=false && go vet ./... && go test ./... && go build -o .work/gopeer .)

# Clippy's lints, as errors, in the same build as the tests: clippy-driver compiles the
# workspace's own crates (cargo applies RUSTC_WORKSPACE_WRAPPER to workspace members only, and
# the dependencies are built once, as for any test build). `cargo clippy` would check every
# dependency a second time (metadata only, ~10 minutes of a cold CI run). CLIPPY_ARGS is how
# cargo-clippy hands its arguments to clippy-driver; a canary with a known lint checks first
# that this driver turns it into an error, else `cargo clippy` runs as before (so a driver
# missing, broken or reading its arguments differently never lets lints pass unseen). What
# differs from a plain build, for the workspace's crates only: clippy-driver turns MIR
# optimisations off, and with them the debug checks on raw pointer dereferences (the
# workspace has none; its `unsafe` is FFI calls and Arrow's unchecked constructors, which keep
# their own checks).
step "build, with clippy's lints as errors"
clippy_args="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
canary="$(mktemp -d)"
printf 'pub fn probe(v: &[u8]) -> bool {\n    v.len() == 0\n}\n' > "$canary/canary.rs"
canary_out="$(CLIPPY_ARGS="$clippy_args" clippy-driver --edition 2021 --crate-type lib \
  --emit metadata -o "$canary/canary.rmeta" "$canary/canary.rs" 2>&1 || true)"
if grep -q '^error: length comparison to zero' <<<"$canary_out"; then
  export RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver)"
  export CLIPPY_ARGS="$clippy_args"
else
  echo "clippy-driver did not fail on the canary lint: linting with cargo clippy"
  cargo clippy --workspace --all-targets --features failpoints --quiet -- -D warnings
fi
rm -rf "$canary"
cargo test --workspace --all-targets --features failpoints --no-run

step "tests"
cargo test --workspace --all-targets --features failpoints "$@"
