#!/bin/sh
# build.sh [OUT] compiles upper.c to OUT (default upper.wasm, next to this
# script) with clang and wasm-ld for wasm32. The flags are fixed so that a
# given clang version always makes the same bytes. The committed upper.wasm
# was built by the clang below (the first line of clang --version), which
# the test that rebuilds it compares with its own:
#
# built-with: Debian clang version 14.0.6
set -eu
cd "$(dirname "$0")"
out=${1:-upper.wasm}
${CC:-clang} --target=wasm32 -O2 -msimd128 -nostdlib -ffreestanding \
	-Wall -Wextra -Werror \
	-Wl,--no-entry -Wl,--stack-first -Wl,-z,stack-size=4096 \
	-o "$out" upper.c
chmod 644 "$out"
