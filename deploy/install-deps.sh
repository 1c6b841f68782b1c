#!/usr/bin/env bash
# Install what building and testing pvgate needs on Debian 12, only when it is
# missing, so that a second run costs nothing. Used by deploy/demo.sh and
# tests/run.sh (and so by CI, which starts from a fresh machine).
set -euo pipefail

# Debian packages: compilers and headers for the build and the tests.
#  gcc, libc6-dev  - C parts of crates; the protocol layout test compiles C
#  libxen-dev      - Xen's protocol headers (/usr/include/xen/io), the spec
#  pkg-config      - finding system libraries
#  g++             - openh264 (built from source by openh264-sys2) is C++
#  nasm            - openh264's x86 assembly; without it the build silently
#                    falls back to C and encodes 2-3x slower
#  cmake           - the opus crate builds its bundled libopus with it
#  libvpx-dev      - VP8 encoder/decoder (env-libvpx-sys links it via pkg-config)
#  ffmpeg          - the display benchmark's comparison (libx264, libvpx)
#  chromium, chromium-driver - the browser tests (tests/browser) drive Debian's
#                    headless Chromium through chromedriver
#  iproute2        - `ip netns` and `tc`: the congestion test puts the gateway
#                    behind a shaped veth link
#  podman, runc    - the container test (tests/container) builds and runs the
#                    runtime image; runc because crun fails on these machines
#  debootstrap     - makes that test's Debian base image where no registry is
#                    reachable (deploy/make-base-image.sh)
#  curl            - that test's HTTP checks
packages=(gcc libc6-dev libxen-dev pkg-config g++ nasm cmake libvpx-dev ffmpeg chromium chromium-driver iproute2
          podman runc debootstrap curl)
#  nodejs          - the web client's unit tests (node --test); only when no node
#                    is on PATH (one installed another way will do)
command -v node >/dev/null 2>&1 || packages+=(nodejs)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "==> installing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: the machine's rustup toolchain, with the components the checks use.
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "error: no Rust toolchain (cargo) found. Install rustup (https://rustup.rs) and run this again." >&2
        exit 1
    fi
fi
for component in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

# The policy plugins (wasm-plugins/) are WebAssembly components built for
# wasm32-wasip2 (the target's standard library comes through rustup).
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
