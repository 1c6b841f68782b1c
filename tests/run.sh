#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is missing,
# checks formatting and lints, then runs every test tier that runs here.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
source deploy/install-deps.sh

echo "==> wasm-plugins: SDK and example plugins (wasm32-wasip2)"
cargo build --release --target wasm32-wasip2 --manifest-path wasm-plugins/Cargo.toml --quiet
cargo fmt --all --check --manifest-path wasm-plugins/Cargo.toml
cargo clippy --target wasm32-wasip2 --manifest-path wasm-plugins/Cargo.toml --quiet -- -D warnings
cargo clippy -p pvgate-policy-sdk -p pvgate-plugin-check --all-targets --manifest-path wasm-plugins/Cargo.toml --quiet -- -D warnings
# The SDK's parsers on the build machine; the built components import only the host interface.
cargo test -p pvgate-policy-sdk -p pvgate-plugin-check --manifest-path wasm-plugins/Cargo.toml --quiet
echo "==> cargo fmt --check"
cargo fmt --all --check
# Lints ride along with the build: clippy-driver compiles our own crates
# (RUSTC_WORKSPACE_WRAPPER leaves dependencies to plain rustc) and fails on
# any warning. A separate `cargo clippy` would type-check every dependency a
# second time, in check mode, which on 2 cores cost a quarter of the run.
# The CI build gets its own target directory so these flags never invalidate
# a developer's everyday build.
export CARGO_TARGET_DIR="${PVGATE_CI_TARGET_DIR:-$PWD/target/ci}"
export RUSTC_WORKSPACE_WRAPPER=clippy-driver
export RUSTFLAGS="-D warnings"
echo "==> cargo build --all-targets, linted by clippy (the end-to-end tests start the binaries)"
cargo build --workspace --all-targets --quiet
echo "==> node --test web/tests/ (the web client's pure modules)"
node --test web/tests/*.test.js
echo "==> cargo test"
cargo test --workspace 2>&1
echo "==> container: the runtime image (deploy/Containerfile) built from these binaries, serving the demo"
bash tests/container/run.sh
echo "==> all tests passed in $(( $(date +%s) - start )) s"
