#!/bin/sh
# build.sh [OUT] compiles kitcheck.rs and the kit (../lib.rs) to OUT (default
# kitcheck.wasm, next to this script) with plain rustc for wasm32-wasi, with
# the flags of examples/plugins/upper-rust/build.sh. The committed
# kitcheck.wasm was built by:
#
# built-with: rustc 1.63.0
set -eu
# The paths compiled in (a panic's location) are relative to this folder,
# wherever the checkout is: --remap-path-prefix below.
cd "$(dirname "$0")"
out=${1:-kitcheck.wasm}
rustc=${RUSTC:-/usr/bin/rustc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags="--edition 2021 --target wasm32-wasi -C opt-level=3 -C panic=abort -C codegen-units=1
	-C target-feature=+simd128,+bulk-memory -D warnings --remap-path-prefix=$(pwd)=."
# shellcheck disable=SC2086
$rustc $flags --crate-type=rlib --crate-name dataflare_pdk \
	-o "$tmp/libdataflare_pdk.rlib" ../lib.rs
# shellcheck disable=SC2086
$rustc $flags --crate-type=cdylib --crate-name kitcheck -C lto -C strip=symbols \
	--extern dataflare_pdk="$tmp/libdataflare_pdk.rlib" -o "$out" kitcheck.rs
chmod 644 "$out"
