#!/usr/bin/env bash
# Idempotent dependency installer: Debian 12 packages only. Skips apt when everything is present.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git
  clang libclang-rt-14-dev llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  nlohmann-json3-dev catch2 libyaml-cpp-dev libyaml-dev libcurl4-openssl-dev libjemalloc-dev
  libspdlog-dev libfmt-dev libcli11-dev libbenchmark-dev
  libnl-3-dev libnl-route-3-dev libcpp-httplib-dev libnghttp2-dev prometheus-cpp-dev
  iproute2 iputils-ping iperf3 iptables netcat-openbsd curl bc python3
  containernetworking-plugins podman runc busybox-static
  unzip nodejs npm python3-yaml openssl debootstrap
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# nodejs/npm may come from elsewhere on some machines; accept any working npm.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
filtered=()
for p in "${missing[@]}"; do [ -n "$p" ] && filtered+=("$p"); done

if [ ${#filtered[@]} -gt 0 ]; then
  echo "install-deps: installing ${filtered[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${filtered[@]}"
else
  echo "install-deps: all packages present"
fi

# The BPF filesystem must be mounted for pinned maps.
if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
  mount -t bpf bpf /sys/fs/bpf || echo "install-deps: warning: could not mount bpffs at /sys/fs/bpf" >&2
fi
