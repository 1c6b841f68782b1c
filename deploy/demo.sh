#!/usr/bin/env bash
# The demo, from a fresh Debian machine: installs what is missing, builds
# pvgate in release mode and runs `pvgate demo` (simulated Xen + guests).
# Extra arguments go to `pvgate demo` (see `pvgate demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/install-deps.sh
echo "==> building pvgate (release; the first build takes several minutes)"
cargo build --release --bin pvgate --bin pvgate-guest-sim
exec target/release/pvgate demo "$@"
