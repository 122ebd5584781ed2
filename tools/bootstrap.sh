#!/usr/bin/env bash
# bootstrap.sh: install dbr's Debian dependencies, only those missing.
# Usage: tools/bootstrap.sh [--bench]   (--bench adds PyTorch for peer benchmarks)
set -euo pipefail

pkgs=(build-essential cmake ninja-build pkg-config zlib1g-dev llvm-19-dev libzstd-dev
      libxml2-dev libglpk-dev libcmocka-dev libgraphviz-dev graphviz libopenmpi-dev
      openmpi-bin libopenblas-dev dataset-fashion-mnist clang libjansson-dev)
for arg in "$@"; do
    case "$arg" in
        --bench) pkgs+=(python3-torch) ;;
        -h|--help) sed -n '2,3p' "$0" | sed 's/^# //'; exit 0 ;;
        *) echo "bootstrap.sh: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    echo "bootstrap: all ${#pkgs[@]} packages present"
    exit 0
fi

echo "bootstrap: installing ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "bootstrap: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y "${missing[@]}"
