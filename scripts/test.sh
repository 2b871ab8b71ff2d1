#!/usr/bin/env bash
# The test command of the README: sets the machine up, builds the images the Docker tests use,
# then runs every Rust test (unit, property, integration, Docker) and the Python compatibility test.
# Docker tests skip when no engine answers unless REQUIRE_DOCKER=1 (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if docker version >/dev/null 2>&1; then
  bash scripts/build-images.sh --zookeeper --redis --otel
fi

cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-2}"

if [ -d tests/python ]; then
  python3 -m pytest -q tests/python
fi
