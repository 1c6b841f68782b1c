#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is missing,
# checks formatting and lints, then runs every test tier that runs here.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
source deploy/install-deps.sh

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> cargo build (the binaries the end-to-end tests start)"
cargo build --workspace --bins --quiet
echo "==> node --test web/tests/ (the web client's pure modules)"
node --test web/tests/*.test.js
echo "==> cargo test"
cargo test --workspace 2>&1
echo "==> all tests passed in $(( $(date +%s) - start )) s"
