#!/usr/bin/env bash
# The real-Xen test: the gateway in a real dom0 against the real Linux frontends of a PV
# domU, Xen 4.17 under QEMU software emulation. One command, on a Debian 12 host, as root:
#
#   bash tests/xen-qemu/run.sh                 # everything (≈ 15 min; see README.md here)
#   bash tests/xen-qemu/run.sh --fake-backend  # the environment only, no gateway
#   PVGATE_BIN=path/to/pvgate bash tests/xen-qemu/run.sh   # test that binary, build nothing
#   PVGATE_LOG=info,pvgate_backends=debug bash tests/xen-qemu/run.sh   # the gateway's log filter
#
# Installs what is missing (Debian packages), builds `pvgate` (release) on the host, builds
# or reuses the images under $XENQEMU_WORK (default ~/.cache/pvgate-xen-qemu), then boots
# and checks (check.py). Prints a summary with timings; exit 0 only when every check passed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export XENQEMU_WORK=${XENQEMU_WORK:-$HOME/.cache/pvgate-xen-qemu}
W=$XENQEMU_WORK
FAKE=0
for a in "$@"; do
  case "$a" in
    --fake-backend) FAKE=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option $a (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "run.sh needs root (apt-get, mmdebstrap, chroot into the image root)" >&2; exit 2
fi
mkdir -p "$W/share/logs" "$W/share/bin" "$W/logs"
# dom0 helpers, read from the share at run time (short commands survive the serial console)
install -m 755 "$HERE"/dom0/bin/* "$W/share/bin/"
printf %s "${PVGATE_LOG:-info}" > "$W/share/log-filter"   # the gateway's --log in dom0
HOST_PHASES=""
phase_start() { echo "==> $1"; PH_NAME=$1; PH_T=$(date +%s.%N); }
phase_end() { HOST_PHASES+="$PH_NAME=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $PH_T}");"; }

phase_start "host packages"
PKGS="mmdebstrap cpio e2fsprogs gzip busybox-static gcc libc6-dev libdrm-dev python3-pexpect python3-websockets python3-pil libopus0"
missing=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PKGS 2>/dev/null | awk '$1!="ii"{print $2}' || true)
for p in $PKGS; do dpkg-query -W "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "${missing// /}" ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
phase_end

if [ $FAKE = 0 ]; then
  if [ -n "${PVGATE_BIN:-}" ]; then
    phase_start "pvgate binary given: $PVGATE_BIN"
    BIN=$PVGATE_BIN
  else
    phase_start "cargo build --release -p pvgate"
    # Release: the gateway runs under software emulation, where our own crates at
    # opt-level 0 would be the bottleneck.
    (cd "$REPO" && cargo build --release -p pvgate --quiet)
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/pvgate
  fi
  [ -x "$BIN" ] || { echo "no pvgate binary at $BIN" >&2; exit 2; }
  install -m 755 "$BIN" "$W/share/pvgate"
  # a fresh control token per run; only its hash goes into the gateway's configuration
  TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf %s "$TOKEN" > "$W/share/token"; chmod 600 "$W/share/token"
  HASH=$(printf %s "$TOKEN" | "$BIN" hash-token --user xen-qemu-check --role control | sed -n 's/^sha256 *= *"\(.*\)"/\1/p')
  [ -n "$HASH" ] || { echo "pvgate hash-token printed no sha256 line" >&2; exit 2; }
  cat > "$W/share/pvgate.toml" <<EOF
# written by tests/xen-qemu/run.sh
[streaming]
webrtc = false     # the check is a WebSocket client on the host, through QEMU's port forward

[[tenant]]
name = "xen-qemu"
guests = ["domu*"] # by name: the domid changes when the domU reboots

[[tenant.token]]
user = "xen-qemu-check"
role = "control"
sha256 = "$HASH"
EOF
  phase_end
fi

phase_start "images (built or cached)"
bash "$HERE/images.sh"
phase_end

export XENQEMU_HOST_PHASES=$HOST_PHASES
args=()
[ $FAKE = 1 ] && args+=(--fake-backend)
exec /usr/bin/python3 "$HERE/check.py" "${args[@]}"
