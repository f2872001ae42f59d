#!/usr/bin/env bash
# Build llama.cpp's llama-server and llama-bench from the llama-cpp-python sdist on PyPI (its
# vendor/llama.cpp): no other download. The binaries are cached per sdist version under
# ${SPECVIZ_CACHE:-~/.cache/specviz}/llama.cpp/<version>/bin, so a second call returns at once.
# About 12 minutes on one core (cmake + ninja + g++; apt packages cmake, ninja-build, g++).
# Prints the bin directory on its last line.
#   scripts/build-llama-cpp.sh            # the version pinned below
#   LLAMA_CPP_PYTHON=0.3.36 JOBS=2 scripts/build-llama-cpp.sh
set -euo pipefail
version="${LLAMA_CPP_PYTHON:-0.3.36}"
jobs="${JOBS:-1}"
cache="${SPECVIZ_CACHE:-$HOME/.cache/specviz}/llama.cpp/$version"
bin="$cache/bin"
if [[ -x "$bin/llama-server" && -x "$bin/llama-bench" ]]; then
  echo "$bin"
  exit 0
fi
for tool in cmake ninja g++; do
  command -v "$tool" >/dev/null || { echo "build-llama-cpp: $tool is missing (apt-get install cmake ninja-build g++)" >&2; exit 2; }
done
pip="${PIP:-python3 -m pip}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
$pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work" >&2
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
# GGML_NATIVE: the CPU's own instruction set (avx512_bf16 where it has it); no curl, no downloads
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
ninja -C "$work/build" -j "$jobs" llama-server llama-bench >&2
mkdir -p "$bin.tmp"
cp "$work/build/bin/llama-server" "$work/build/bin/llama-bench" "$bin.tmp/"
rm -rf "$bin" && mv "$bin.tmp" "$bin"   # the cache appears whole or not at all
echo "$bin"
