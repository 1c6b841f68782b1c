#!/usr/bin/env bash
# Build the pvgate runtime image from binaries cargo already built:
#
#   cargo build --release --bin pvgate --bin pvgate-guest-sim
#   deploy/build-image.sh [--bin-dir target/release] [--base IMAGE]
#                         [--tag localhost/pvgate:latest] [--engine CMD] [-- BUILD-ARGS...]
#
# It stages a small build context (the two binaries, the healthcheck and the
# example configurations) and runs `podman build` (or `docker build`) with
# deploy/Containerfile on it. Staging keeps the multi-gigabyte target/
# directory out of the build context.
#   --base    the Containerfile's BASE (default: its own, Debian's
#             bookworm-slim from the registry); deploy/make-base-image.sh makes
#             one without a registry
#   --engine  e.g. "podman --runtime runc" (default: podman, else docker)
#   after --, arguments for the build command, e.g. --isolation chroot
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

bin_dir=$repo/target/release
base=
tag=localhost/pvgate:latest
engine=
extra=()
while (($#)); do
    case $1 in
        --bin-dir) bin_dir=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --engine) engine=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$engine" ]; then
    if command -v podman >/dev/null; then engine=podman
    elif command -v docker >/dev/null; then engine=docker
    else echo "build-image.sh: neither podman nor docker is installed (apt-get install podman)" >&2; exit 1
    fi
fi
read -r -a eng <<<"$engine"

for b in pvgate pvgate-guest-sim; do
    if [ ! -x "$bin_dir/$b" ]; then
        echo "build-image.sh: $bin_dir/$b is missing: build it first with" >&2
        echo "    cargo build --release --bin pvgate --bin pvgate-guest-sim" >&2
        echo "(or pass --bin-dir DIR where cargo put them)" >&2
        exit 1
    fi
done

ctx=$(mktemp -d "${TMPDIR:-/var/tmp}/pvgate-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
# Hard links when the target directory is on the same file system: no copy
# of ~100 MB debug binaries.
for b in pvgate pvgate-guest-sim; do
    ln "$bin_dir/$b" "$ctx/$b" 2>/dev/null || cp "$bin_dir/$b" "$ctx/$b"
done
cp "$here/healthcheck.sh" "$here/pvgate.example.toml" "$here/pvgate.dom0.toml" "$ctx/"

args=(build -f "$here/Containerfile" -t "$tag")
[ -z "$base" ] || args+=(--build-arg "BASE=$base")
# podman writes OCI images by default, which have no HEALTHCHECK. (The
# engine may be wrapped: "sudo podman", "env VAR=... podman".)
for w in "${eng[@]}"; do
    if [ "$(basename "$w")" = podman ]; then args+=(--format docker); break; fi
done
echo "==> ${eng[*]} ${args[*]} ${extra[*]} (context: $bin_dir binaries)"
"${eng[@]}" "${args[@]}" "${extra[@]}" "$ctx"
echo "==> built $tag"
