#!/bin/sh
# build.sh [OUT] compiles kv_lookup.rs and the Rust kit (pdk/rust/lib.rs) to
# OUT (default kv-lookup.wasm, next to this script) with plain rustc for
# wasm32-wasi, with the flags of ../upper-rust/build.sh: no Cargo, no crates,
# and a given rustc always makes the same bytes. The committed kv-lookup.wasm
# was built by the rustc below (the first line of rustc --version), which the
# test that rebuilds it compares with its own. Any change to kv_lookup.rs or
# to the kit changes the bytes: rebuild and commit kv-lookup.wasm with it.
#
# built-with: rustc 1.63.0
set -eu
# The paths compiled in (a panic's location) are relative to this folder,
# wherever the checkout is: --remap-path-prefix below.
cd "$(dirname "$0")"
out=${1:-kv-lookup.wasm}
rustc=${RUSTC:-/usr/bin/rustc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags="--edition 2021 --target wasm32-wasi -C opt-level=3 -C panic=abort -C codegen-units=1
	-C target-feature=+simd128,+bulk-memory -D warnings --remap-path-prefix=$(pwd)=."
# shellcheck disable=SC2086
$rustc $flags --crate-type=rlib --crate-name dataflare_pdk \
	-o "$tmp/libdataflare_pdk.rlib" ../../../pdk/rust/lib.rs
# shellcheck disable=SC2086
$rustc $flags --crate-type=cdylib --crate-name kv_lookup -C lto -C strip=symbols \
	--extern dataflare_pdk="$tmp/libdataflare_pdk.rlib" -o "$out" kv_lookup.rs
chmod 644 "$out"
