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
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> cargo build (the binaries the end-to-end tests start)"
cargo build --workspace --bins --quiet
echo "==> node --test web/tests/ (the web client's pure modules)"
node --test web/tests/*.test.js
echo "==> cargo test"
cargo test --workspace 2>&1
echo "==> all tests passed in $(( $(date +%s) - start )) s"
