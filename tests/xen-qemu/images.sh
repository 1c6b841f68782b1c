#!/usr/bin/env bash
# Build (or reuse) everything the real-Xen test boots, under $W:
#   qemuroot/            bookworm's QEMU 7.2 in a private root (the host's newer
#                        qemu-utils breaks Debian 12's qemu-system-x86 package)
#   rootfs/              the dom0 root: Xen 4.17, Linux 6.1, xl, alsa-utils (copied into the domU)
#   boot/                xen, vmlinuz, dom0-initrd.cpio.gz, dom0.img (ext4, with the domU
#                        kernel, initramfs and xl config inside)
# Each part is rebuilt only when its inputs change: a stamp file holds the sha256 of
# its inputs (package lists, our files in this directory, the guest tools' sources).
# Usage: images.sh            (W defaults to ~/.cache/pvgate-xen-qemu, or $XENQEMU_WORK)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
W=${XENQEMU_WORK:-$HOME/.cache/pvgate-xen-qemu}
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
mkdir -p "$W"

QEMU_PKGS="qemu-system-x86,seabios,ipxe-qemu"
# dom0: Xen + kernel + toolstack; libvpx7 for the pvgate binary; alsa-utils only as the
# source of speaker-test/aplay and their libraries for the domU initramfs.
ROOT_PKGS="linux-image-amd64,xen-hypervisor-4.17-amd64,xen-utils-4.17,xenstore-utils,busybox,kmod,procps,iproute2,psmisc,util-linux,e2fsprogs,libvpx7,libstdc++6,alsa-utils"

key() { { printf '%s\n' "$@"; } | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }

step() { printf '==> %s\n' "$*"; }

# --- QEMU in a private root -------------------------------------------------------------
k=$(key "$QEMU_PKGS")
if ! stamp_ok "$W/qemuroot" "$k"; then
  step "QEMU 7.2 (bookworm) into $W/qemuroot"
  rm -rf "$W/qemuroot"
  mmdebstrap --quiet --variant=minbase --include="$QEMU_PKGS" bookworm "$W/qemuroot" "$MIRROR"
  echo "$k" > "$W/qemuroot/.stamp"
fi

# --- dom0 root ----------------------------------------------------------------------------
k=$(key "$ROOT_PKGS")
if ! stamp_ok "$W/rootfs" "$k"; then
  step "dom0 root (Xen 4.17, Linux 6.1) into $W/rootfs"
  rm -rf "$W/rootfs"
  mmdebstrap --quiet --variant=minbase --include="$ROOT_PKGS" bookworm "$W/rootfs" "$MIRROR"
  echo "$k" > "$W/rootfs/.stamp"
fi
[ -n "${ROOTS_ONLY:-}" ] && exit 0
R=$W/rootfs
KV=$(ls "$R/lib/modules" | sort -V | tail -1)

# --- guest tools (static, built here) -----------------------------------------------------
mkdir -p "$W/tools"
for t in drm-pattern evdev-read; do
  src=$HERE/guest-tools/$t.c
  k=$(key "$(sha256sum "$src")" "$(gcc --version | head -1)")
  if [ ! -x "$W/tools/$t" ] || [ "$(cat "$W/tools/$t.stamp" 2>/dev/null)" != "$k" ]; then
    step "guest tool $t"
    gcc -O2 -Wall -Werror -static -I/usr/include/libdrm -o "$W/tools/$t" "$src"
    echo "$k" > "$W/tools/$t.stamp"
  fi
done

# --- boot files and disk image ------------------------------------------------------------
inputs=$(cd "$HERE" && sha256sum images.sh dom0/init-xen dom0/initrd-init dom0/fake-initwait.sh domu/init domu/domu.cfg domu/bin/* && sha256sum "$W"/tools/drm-pattern "$W"/tools/evdev-read | cut -d' ' -f1 \
         && cat "$W/rootfs/.stamp" && sha256sum /bin/busybox | cut -d' ' -f1)
k=$(key "$inputs")
B=$W/boot
if stamp_ok "$B" "$k"; then
  step "images up to date ($B)"
  exit 0
fi
step "images into $B"
rm -rf "$B"; mkdir -p "$B"
zcat "$R/boot/xen-4.17-amd64.gz" > "$B/xen"          # ELF32 multiboot: QEMU -kernel loads it
cp "$R/boot/vmlinuz-$KV" "$B/vmlinuz"

# modules and their dependencies (as modprobe resolves them) into an initramfs root
copy_modules() { # ROOTDIR MODULE...
  local dst=$1; shift
  mkdir -p "$dst/lib/modules/$KV"
  for m in "$@"; do
    chroot "$R" /sbin/modprobe -S "$KV" --show-depends "$m" | awk '$1=="insmod"{print $2}'
  done | sort -u | while read -r p; do
    mkdir -p "$dst/$(dirname "$p")"; cp "$R/$p" "$dst/$p"
  done
  # modules.dep for exactly these (their dependencies were all copied); modprobe needs it
  ( cd "$dst/lib/modules/$KV" && find . -name '*.ko*' | sed 's|^\./||' ) > "$W/.mods"
  grep -E "^($(paste -sd'|' "$W/.mods")):" "$R/lib/modules/$KV/modules.dep" > "$dst/lib/modules/$KV/modules.dep"
  cp "$R/lib/modules/$KV/modules.builtin" "$dst/lib/modules/$KV/"
}
busybox_root() { # DIR
  mkdir -p "$1"/{bin,proc,sys,dev,etc,tmp,run}
  cp /bin/busybox "$1/bin/busybox"
  for a in $("$1/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"; done
  ln -sfn bin "$1/sbin"
}

# domU initramfs: busybox, the two modular frontends, our tools, speaker-test + aplay with their libraries
D=$W/domu-root
rm -rf "$D"; busybox_root "$D"
copy_modules "$D" drm_xen_front snd_xen_front evdev   # xen-kbdfront is built in
cp "$W/tools/drm-pattern" "$W/tools/evdev-read" "$HERE"/domu/bin/* "$D/bin/"
mkdir -p "$D/usr/bin"
for b in speaker-test aplay; do
  cp "$R/usr/bin/$b" "$D/usr/bin/$b"
  chroot "$R" /usr/bin/ldd "/usr/bin/$b" | awk '/=>/{print $3} /ld-linux/{print $1}' | while read -r l; do
    [ -n "$l" ] && [ -e "$R/$l" ] || continue
    mkdir -p "$D/$(dirname "$l")"; cp -L "$R/$l" "$D/$l"
  done
done
mkdir -p "$D/usr/share"; cp -a "$R/usr/share/alsa" "$D/usr/share/alsa"
[ -e "$D/lib64" ] || ln -s lib "$D/lib64" 2>/dev/null || true
cp "$HERE/domu/init" "$D/init"; chmod +x "$D/init"
( cd "$D" && find . | cpio -H newc -o --quiet | gzip -6 ) > "$B/domu-initrd.cpio.gz"

# tiny dom0 initramfs: busybox + virtio + ext4, mounts /dev/vda, switch_root
I=$W/dom0-initrd-root
rm -rf "$I"; busybox_root "$I"; mkdir -p "$I/newroot"
copy_modules "$I" virtio_pci virtio_blk ext4 crc32c_generic
cp "$HERE/dom0/initrd-init" "$I/init"; chmod +x "$I/init"
( cd "$I" && find . | cpio -H newc -o --quiet | gzip -6 ) > "$B/dom0-initrd.cpio.gz"

# dom0 disk: the root + our init + the domU's kernel, initramfs and config
cp "$HERE/dom0/init-xen" "$R/usr/sbin/init-xen"; chmod +x "$R/usr/sbin/init-xen"
mkdir -p "$R/root"
cp "$HERE/dom0/fake-initwait.sh" "$R/root/fake-initwait.sh"; chmod +x "$R/root/fake-initwait.sh"
cp "$HERE/domu/domu.cfg" "$R/root/domu.cfg"
cp "$B/vmlinuz" "$R/root/vmlinuz"
cp "$B/domu-initrd.cpio.gz" "$R/root/domu-initrd.cpio.gz"
truncate -s 2G "$B/dom0.img"
mkfs.ext4 -q -F -L dom0root -d "$R" "$B/dom0.img"
echo "$k" > "$B/.stamp"
ls -la "$B"
