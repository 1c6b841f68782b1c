#!/usr/bin/env bash
# The container tier (tests/run.sh runs it after `cargo test`): build the
# runtime image of deploy/Containerfile from the binaries the test build
# made, then in the image
#   - the binary starts and the default user is not root;
#   - `serve --platform xen` with deploy/pvgate.dom0.toml gets past the
#     configuration to the Xen probe, which finds the Xen libraries (only the
#     hypervisor and its devices are missing on a machine without Xen);
#   - `pvgate demo` serves: /healthz, /api/guests (401 without the token, both
#     demo guests with their displays with it), a snapshot PNG, the image's
#     HEALTHCHECK command, and a clean stop on SIGTERM.
# Podman as ../shared/container-notes.md describes for these machines (runc,
# chroot isolation, host network, no default ulimits); the base image is made
# from Debian's packages by deploy/make-base-image.sh and kept, so only the
# first run on a machine pays for debootstrap.
#
# Environment: PVGATE_CONTAINER_BIN_DIR (default $CARGO_TARGET_DIR/debug,
# else target/ci/debug), PVGATE_CONTAINER_BASE (an existing Debian 12 image
# to use instead of making one).
set -euo pipefail
# Any command that fails without a message of ours still says where.
trap 'echo "container test FAILED: line $LINENO: $BASH_COMMAND exited with $?" >&2' ERR
cd "$(dirname "$0")/../.."
t0=$SECONDS
phase_start=$SECONDS
phase() { # print how long the previous phase took, start the next
    local now=$SECONDS
    [ -z "${phase_name:-}" ] || echo "    ($phase_name: $((now - phase_start)) s)"
    phase_name=$1
    phase_start=$now
    echo "--> container: $1"
}

bin_dir=${PVGATE_CONTAINER_BIN_DIR:-${CARGO_TARGET_DIR:-$PWD/target/ci}/debug}
base=${PVGATE_CONTAINER_BASE:-localhost/debian:bookworm-minbase}
tag=localhost/pvgate:ci-test
name=pvgate-ci-test-$$
token=ci-token-$$

fail() {
    echo "container test FAILED: $*" >&2
    if [ -n "${started:-}" ]; then
        echo "---- the container's log (podman logs $name) ----" >&2
        "${podman[@]}" logs "$name" 2>&1 | tail -n 60 >&2 || true
        echo "----" >&2
    fi
    exit 1
}

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
for tool in podman runc debootstrap curl; do
    command -v "$tool" >/dev/null || fail "$tool is missing: deploy/install-deps.sh installs it (apt-get install $tool)"
done
# These machines refuse to raise rlimits, which podman does by default; and
# crun fails on their cgroup setup where runc works (container-notes.md).
# Neither setting changes what the test proves.
conf=$(mktemp /tmp/pvgate-containers.XXXXXX.conf)
printf '[containers]\ndefault_ulimits = []\n' >"$conf"
podman=("${sudo[@]}" env "CONTAINERS_CONF=$conf" podman --runtime runc)
cleanup() {
    [ -z "${started:-}" ] || "${podman[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
    rm -f "$conf"
}
trap cleanup EXIT

for b in pvgate pvgate-guest-sim; do
    [ -x "$bin_dir/$b" ] || fail "$bin_dir/$b is missing: tests/run.sh builds it (cargo build --workspace), or set PVGATE_CONTAINER_BIN_DIR"
done

phase "base image $base"
if [ -z "${PVGATE_CONTAINER_BASE:-}" ]; then
    "${sudo[@]}" env "CONTAINERS_CONF=$conf" deploy/make-base-image.sh --tag "$base" --engine "podman --runtime runc" \
        || fail "could not make the base image (deploy/make-base-image.sh, output above)"
fi

phase "build $tag from $bin_dir"
old_id=$("${podman[@]}" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
build_log=$(mktemp /tmp/pvgate-build.XXXXXX.log)
if ! deploy/build-image.sh --bin-dir "$bin_dir" --base "$base" --tag "$tag" \
    --engine "${podman[*]}" -- --isolation chroot >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    rm -f "$build_log"
    fail "the image did not build (last lines of the build above)"
fi
rm -f "$build_log"
new_id=$("${podman[@]}" image inspect --format '{{.Id}}' "$tag") || fail "the build did not tag $tag"
# The previous build's image (and its binary layers) would pile up run after
# run on a developer's machine.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    "${podman[@]}" rmi "$old_id" >/dev/null 2>&1 || true
fi
echo "    image $tag: $(("$("${podman[@]}" image inspect --format '{{.Size}}' "$tag")" / 1000000)) MB"

phase "the binary runs, as a non-root user"
out=$("${podman[@]}" run --rm --no-healthcheck --entrypoint /bin/sh "$tag" -c 'id -u; pvgate --version' 2>&1) \
    || fail "pvgate does not start in the image: $out"
[ "$(head -n1 <<<"$out")" = 10001 ] || fail "the image's user is not 10001 (pvgate): $out"
grep -q '^pvgate ' <<<"$out" || fail "pvgate --version printed: $out"

phase "serve --platform xen: dom0 config accepted, Xen libraries found"
rc=0
out=$("${podman[@]}" run --rm --no-healthcheck --network=host "$tag" \
    serve --platform xen --listen 127.0.0.1:0 --config /usr/share/doc/pvgate/pvgate.dom0.toml 2>&1) || rc=$?
[ "$rc" -ne 0 ] || fail "serve --platform xen succeeded on a machine without Xen: $out"
grep -q "cannot start the xen platform" <<<"$out" \
    || fail "serve with deploy/pvgate.dom0.toml did not reach the Xen probe (a config error?): $out"
if grep -Eq '^ *- *libxen(gnttab|evtchn)' <<<"$out"; then
    fail "the image lacks Xen libraries the xen platform loads: $out"
fi
grep -q "panicked" <<<"$out" && fail "pvgate panicked: $out"

phase "dom0 run options: read-only, root without capabilities, the devices"
# As deploy/compose.yaml and deploy/systemd/pvgate-podman.service run it,
# with /dev/null standing in for the /dev/xen nodes this machine lacks: the
# options are accepted, the policy cache is writable, and the probe finds
# the devices where pvgate looks (only the hypervisor is missing).
# pvgate goes on to open them (they exist), and must fail, not hang, on
# what /dev/null does to a grant or xenstore client: hence the timeout.
volume=pvgate-ci-cache-$$
rc=0
out=$(timeout 60 "${podman[@]}" run --rm --name "$name-dom0" --no-healthcheck --network=host \
    --user 0:0 --cap-drop=all --security-opt=no-new-privileges --read-only --tmpfs /tmp \
    --device /dev/null:/dev/xen/xenbus --device /dev/null:/dev/xen/gntdev \
    --device /dev/null:/dev/xen/evtchn --device /dev/null:/dev/xen/gntalloc \
    --volume "$volume:/var/cache/pvgate" --entrypoint /bin/sh "$tag" -c '
        touch /var/cache/pvgate/policy/.writable || exit 10
        exec pvgate serve --platform xen --listen 127.0.0.1:0 --config /usr/share/doc/pvgate/pvgate.dom0.toml' 2>&1) || rc=$?
if [ "$rc" -eq 124 ]; then
    "${podman[@]}" rm -f -t 0 "$name-dom0" >/dev/null 2>&1 || true
    "${podman[@]}" volume rm -f "$volume" >/dev/null 2>&1 || true
    fail "serve --platform xen with stand-in devices hung for 60 s instead of failing: $out"
fi
"${podman[@]}" volume rm -f "$volume" >/dev/null 2>&1 || true
[ "$rc" -ne 10 ] || fail "root without capabilities cannot write the policy cache /var/cache/pvgate/policy: $out"
[ "$rc" -ne 0 ] || fail "serve --platform xen succeeded on a machine without Xen: $out"
grep -q "cannot start the xen platform" <<<"$out" || fail "serve with the dom0 options did not reach the Xen probe: $out"
if grep -Eq '^ *- .*/dev/xen/(xenbus|gntdev|evtchn|gntalloc)' <<<"$out"; then
    fail "the probe does not see the devices passed with --device: $out"
fi

phase "pvgate demo in the container"
# A free port: nothing answers on it now.
port=
for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    if ! { exec 3<>"/dev/tcp/127.0.0.1/$p"; } 2>/dev/null; then port=$p; break; fi
    exec 3>&-
done
[ -n "$port" ] || fail "found no free TCP port on 127.0.0.1"
url=http://127.0.0.1:$port
# The HEALTHCHECK command is run below by hand (podman schedules it with
# systemd timers, which these machines lack): --no-healthcheck keeps podman
# from trying.
"${podman[@]}" run -d --name "$name" --network=host --no-healthcheck \
    -e "PVGATE_HEALTHCHECK_URL=$url/healthz" \
    "$tag" demo --listen "127.0.0.1:$port" --token "$token" >/dev/null \
    || fail "podman run of the demo failed"
started=1
deadline=$((SECONDS + 30))
until "${podman[@]}" logs "$name" 2>/dev/null | grep -q "open $url/?token=$token"; do
    [ "$("${podman[@]}" inspect --format '{{.State.Running}}' "$name")" = true ] \
        || fail "the demo exited before printing its URL"
    ((SECONDS < deadline)) || fail "the demo did not print its URL ($url/?token=...) within 30 s"
    sleep 0.2
done

body=$(curl -sS --max-time 5 "$url/healthz") || fail "GET /healthz failed"
[ "$body" = ok ] || fail "GET /healthz answered '$body', not 'ok'"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$url/api/guests") || fail "GET /api/guests failed"
[ "$code" = 401 ] || fail "GET /api/guests without a token answered $code, not 401"
# Both demo guests, each with its display, once their devices connect.
deadline=$((SECONDS + 60))
while :; do
    guests=$(curl -sS --max-time 5 -H "Authorization: Bearer $token" "$url/api/guests") \
        || fail "GET /api/guests with the token failed"
    # (grep finds nothing while the guests are still connecting)
    n_guests=$({ grep -o '"domid":[0-9]*' <<<"$guests" || true; } | sort -u | wc -l)
    n_displays=$({ grep -o '"displays":\[{' <<<"$guests" || true; } | wc -l)
    if [ "$n_guests" -eq 2 ] && [ "$n_displays" -eq 2 ]; then break; fi
    ((SECONDS < deadline)) || fail "after 60 s /api/guests shows $n_guests guest(s) and $n_displays display(s), not 2 and 2: $guests"
    sleep 0.5
done
echo "    /api/guests: $n_guests guests, $n_displays displays"
# A frame went through the display backend and the PNG encoder.
deadline=$((SECONDS + 30))
until [ "$(curl -sS --max-time 10 -H "Authorization: Bearer $token" \
    "$url/api/guests/1/displays/0/snapshot.png" 2>/dev/null | head -c 8 | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; do
    ((SECONDS < deadline)) || fail "no PNG from /api/guests/1/displays/0/snapshot.png within 30 s"
    sleep 0.5
done
echo "    snapshot.png of guest 1: ok"
# The image's own HEALTHCHECK command, run as podman would.
hc=$("${podman[@]}" image inspect --format '{{range .Config.Healthcheck.Test}}{{.}} {{end}}' "$tag") \
    || fail "cannot read the image's HEALTHCHECK"
[ "${hc%% *}" = CMD ] || fail "the image has no HEALTHCHECK (built without --format docker?): '$hc'"
read -r -a hc_cmd <<<"${hc#CMD }"
out=$("${podman[@]}" exec "$name" "${hc_cmd[@]}" 2>&1) || fail "the HEALTHCHECK command (${hc_cmd[*]}) failed: $out"
echo "    HEALTHCHECK (${hc_cmd[*]}): ok"

phase "stop (SIGTERM)"
"${podman[@]}" stop -t 10 "$name" >/dev/null || fail "podman stop failed"
exit_code=$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$name") || fail "cannot read the demo's exit code"
[ "$exit_code" = 0 ] || fail "the demo exited with $exit_code on SIGTERM, not 0"
if "${podman[@]}" logs "$name" 2>&1 | grep -q panicked; then
    fail "the demo panicked"
fi
phase_name_done=$phase_name
echo "    ($phase_name_done: $((SECONDS - phase_start)) s)"
echo "==> container test passed in $((SECONDS - t0)) s"
