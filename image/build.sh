#!/usr/bin/env bash
# Builds the Plexus container image (localhost/plexus:0.1.0) from the binaries of a CMake build dir.
#
# Usage: bash image/build.sh [build-dir]      (default: <repo>/build; run as root)
# Env:   DEBIAN_MIRROR   Debian mirror for debootstrap and apt (default http://deb.debian.org/debian)
#        PLEXUS_IMAGE    image name (default localhost/plexus:0.1.0)
#
# The rootfs is Debian 12 (bookworm) minbase plus exactly the packages that own the shared libraries the binaries
# link (found with ldd and dpkg -S on this host), plus iproute2 and util-linux/mount. The host must itself be
# bookworm, so that the package names (which carry the sonames) match. The image is FROM scratch: no registry.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$(realpath "${1:-$repo/build}")"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
image="${PLEXUS_IMAGE:-localhost/plexus:0.1.0}"
suite=bookworm
binaries=(agent/plexus-agent cni/plexus-cni cli/plexus)

die() {
  echo "image/build.sh: $*" >&2
  exit 1
}

[[ "$(id -u)" -eq 0 ]] || die "must run as root (debootstrap and chroot)"
for tool in debootstrap podman dpkg-query ldd tar chroot; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install debootstrap podman)"
done
for b in "${binaries[@]}"; do
  [[ -x "$build_dir/$b" ]] || die "$build_dir/$b missing: build first (cmake --build $build_dir)"
done

work="$(mktemp -d "${TMPDIR:-/var/tmp}/plexus-image.XXXXXX")"
rootfs="$work/rootfs"
cleanup() {
  # Unmount before deleting: rm -rf through a live /proc mount would fail, and through a bind would be worse.
  if mountpoint -q "$rootfs/proc" 2>/dev/null; then
    umount "$rootfs/proc" || true
  fi
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# Package owning a library path. With merged /usr, ldd reports /lib/... while dpkg records /usr/lib/... (or the
# reverse), and symlinks are recorded under their own name, so try the path, its /usr twin and its real path.
package_of() {
  local lib="$1" candidate pkg
  local candidates=("$lib")
  case "$lib" in
    /usr/lib/*) candidates+=("${lib#/usr}") ;;
    /lib/* | /lib64/*) candidates+=("/usr$lib") ;;
  esac
  candidates+=("$(readlink -f "$lib")")
  for candidate in "${candidates[@]}"; do
    pkg="$(dpkg-query -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1)" || true
    if [[ -n "$pkg" ]]; then
      echo "$pkg"
      return 0
    fi
  done
  return 1
}

declare -A packages=()
for b in "${binaries[@]}"; do
  # ldd lines: "libfoo.so.1 => /path (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso has no file.
  while read -r lib; do
    pkg="$(package_of "$lib")" || die "no Debian package owns $lib (needed by $b)"
    packages["$pkg"]=1
  done < <(ldd "$build_dir/$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
  if ldd "$build_dir/$b" | grep -q 'not found'; then
    die "$b has unresolved libraries on this host: $(ldd "$build_dir/$b" | grep 'not found' | tr '\n' ' ')"
  fi
done
mapfile -t runtime_packages < <(printf '%s\n' "${!packages[@]}" | sort)
echo "image/build.sh: runtime packages: ${runtime_packages[*]}"

echo "image/build.sh: debootstrap $suite from $mirror"
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror"

cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get update
chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  "${runtime_packages[@]}" iproute2 util-linux mount iptables
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/apt/*
umount "$rootfs/proc"
# Kubernetes and podman provide resolv.conf at run time; do not ship the build host's.
: >"$rootfs/etc/resolv.conf"

for b in "${binaries[@]}"; do
  install -m 0755 "$build_dir/$b" "$rootfs/usr/local/bin/$(basename "$b")"
done

# The binaries must resolve every library inside the image, not just on the build host.
for b in "${binaries[@]}"; do
  name="$(basename "$b")"
  if chroot "$rootfs" ldd "/usr/local/bin/$name" | grep -q 'not found'; then
    die "$name misses libraries in the rootfs: $(chroot "$rootfs" ldd "/usr/local/bin/$name" | grep 'not found' | tr '\n' ' ')"
  fi
done

ctx="$work/context"
mkdir -p "$ctx"
# /dev is provided by the runtime; debootstrap's device nodes would only get in the way.
tar -C "$rootfs" --numeric-owner --xattrs --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
  -cf "$ctx/rootfs.tar" .

echo "image/build.sh: podman build -t $image"
podman build -t "$image" -f "$repo/image/Containerfile" "$ctx"
echo "image/build.sh: built $image"
