#!/usr/bin/env bash
# Make a Debian 12 (bookworm) base image from Debian's own packages, for
# machines that reach a Debian mirror but no container registry:
#
#   deploy/make-base-image.sh [--tag IMAGE] [--mirror URL] [--engine CMD] [--force]
#
# debootstrap --variant=minbase into a temporary directory, then
# `podman import` (or `docker import`). The image is reused when it exists
# already (that is the cache: a second run costs nothing); --force rebuilds
# it, which also picks up the point release's updated packages.
# The mirror is the one apt on this machine already uses, unless --mirror.
# Needs root (debootstrap) and the debootstrap package.
set -euo pipefail

tag=localhost/debian:bookworm-minbase
mirror=
engine=
force=0
while (($#)); do
    case $1 in
        --tag) tag=$2; shift 2 ;;
        --mirror) mirror=$2; shift 2 ;;
        --engine) engine=$2; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "make-base-image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$engine" ]; then
    if command -v podman >/dev/null; then engine=podman
    elif command -v docker >/dev/null; then engine=docker
    else echo "make-base-image.sh: neither podman nor docker is installed (apt-get install podman)" >&2; exit 1
    fi
fi
read -r -a eng <<<"$engine"

if ((!force)) && "${eng[@]}" image inspect "$tag" >/dev/null 2>&1; then
    echo "==> base image $tag exists; reusing it (--force makes it again)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "make-base-image.sh: debootstrap needs root: run it with sudo" >&2
    exit 1
fi
command -v debootstrap >/dev/null || {
    echo "make-base-image.sh: debootstrap is missing: apt-get install debootstrap" >&2
    exit 1
}

# The mirrors apt already uses for bookworm and for its security updates,
# from deb822 .sources files or one-line sources.list entries.
apt_uri_for() { # $1: suite
    local suite=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        # Stanzas are separated by blank lines; print URIs of the first
        # enabled stanza whose Suites include $suite.
        awk -v suite="$suite" '
            function flush() { if (uris != "" && has && enabled) { print uris; found = 1; exit } uris = ""; has = 0; enabled = 1 }
            BEGIN { enabled = 1 }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            tolower($1) == "uris:" { uris = $2 }
            tolower($1) == "enabled:" && tolower($2) == "no" { enabled = 0 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
            END { if (!found) flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -e 's/\[[^]]*\]//' "$f" | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }'
    done
}
if [ -z "$mirror" ]; then
    mirror=$(apt_uri_for bookworm | head -n1)
    if [ -z "$mirror" ]; then
        echo "make-base-image.sh: found no bookworm mirror in /etc/apt/sources.list(.d); pass --mirror URL (e.g. http://deb.debian.org/debian)" >&2
        exit 1
    fi
fi
security=$(apt_uri_for bookworm-security | head -n1)

work=$(mktemp -d /var/tmp/pvgate-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
echo "==> debootstrap --variant=minbase bookworm from $mirror (the first time takes a few minutes)"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    echo "make-base-image.sh: debootstrap failed (log above); check that $mirror is reachable, or pass --mirror URL" >&2
    exit 1
fi
# The image's apt: the same mirror, with the updates and security suites
# when this machine uses them, as Debian's own images are set up.
rm -f "$root/etc/apt/sources.list"
{
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror"
    if [ -n "$security" ]; then
        printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$security"
    fi
} >"$root/etc/apt/sources.list.d/debian.sources"
# What debootstrap downloaded has no place in an image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
echo "==> importing it as $tag"
tar --numeric-owner -C "$root" -c . | "${eng[@]}" import --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "==> base image $tag made"
