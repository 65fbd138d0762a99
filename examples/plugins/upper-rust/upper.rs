//! upper-wasm in Rust: the WebAssembly twin of the native upper plugin, written with the
//! Rust kit (pdk/rust). Each record's value becomes its ASCII upper-case, every other byte
//! unchanged; keys and headers are skipped. Build with build.sh.
//!
//! Speed. The runtime stops a runaway guest by checking, at every loop iteration, whether
//! the batch's deadline has passed; that check, and a `memory.copy` (a call out of compiled
//! code), cost more than the work on a 100-byte value. So the value's room in the output is
//! taken at once ([`Writer::append`]: no copy, no clearing) and filled in blocks of 16 bytes,
//! each read from the input, upper-cased by one SIMD operation (with
//! `-C target-feature=+simd128`) and stored once: straight-line code for values up to 256
//! bytes, 1 KiB per loop iteration beyond. A value whose length is not a multiple of 16 ends
//! with its last 16 bytes, overlapping the block before (upper-casing twice changes nothing);
//! one shorter than 16 bytes is gathered into a block by 8-, 4-, 2- and 1-byte copies.

use dataflare_pdk::{plugin, transform, Config, Error, Info, Writer};

const INFO: Info = Info {
    description: "ASCII upper-case of each value (the WebAssembly twin of upper, in Rust)",
    author: "DataFlare",
    ..Info::new("upper-wasm", "1.0.0")
};

type Block = [u8; 16];

fn upper(_cfg: &Config, value: &[u8], out: &mut Writer) -> Result<(), Error> {
    let n = value.len();
    if n < 16 {
        put(out.append(16), 0, up(short(value)));
        out.truncate(n);
        return Ok(());
    }
    let dst = out.append(n);
    let mut i = 0;
    while n - i > 1024 {
        blocks::<64>(dst, value, i);
        i += 1024;
    }
    if n - i > 512 {
        blocks::<32>(dst, value, i);
        i += 512;
    }
    if n - i > 256 {
        blocks::<16>(dst, value, i);
        i += 256;
    }
    if n - i > 128 {
        blocks::<8>(dst, value, i);
        i += 128;
    }
    if n - i > 64 {
        blocks::<4>(dst, value, i);
        i += 64;
    }
    if n - i > 32 {
        blocks::<2>(dst, value, i);
        i += 32;
    }
    if n - i > 16 {
        blocks::<1>(dst, value, i);
    }
    // 1 to 16 bytes are left: the value's last 16.
    put(dst, n - 16, up(block(value, n - 16)));
    Ok(())
}

/// blocks upper-cases K blocks of src from i into dst.
#[inline(always)]
fn blocks<const K: usize>(dst: &mut [u8], src: &[u8], i: usize) {
    for k in 0..K {
        put(dst, i + 16 * k, up(block(src, i + 16 * k)));
    }
}

/// put stores b in dst at i (nothing past its end: not reached).
#[inline(always)]
fn put(dst: &mut [u8], i: usize, b: Block) {
    if let Some(d) = dst.get_mut(i..i + 16) {
        d.copy_from_slice(&b);
    }
}

/// block returns the 16 bytes of s at i (zeros past its end: not reached).
#[inline(always)]
fn block(s: &[u8], i: usize) -> Block {
    match s.get(i..i + 16) {
        Some(b) => <Block>::try_from(b).unwrap_or_default(),
        None => Block::default(),
    }
}

/// short returns a block holding s (shorter than 16 bytes) followed by zeros.
#[inline(always)]
fn short(s: &[u8]) -> Block {
    let mut b = Block::default();
    let mut i = 0;
    for w in [8, 4, 2, 1] {
        if s.len() & w != 0 {
            if let (Some(d), Some(v)) = (b.get_mut(i..i + w), s.get(i..i + w)) {
                d.copy_from_slice(v);
            }
            i += w;
        }
    }
    b
}

/// up returns the ASCII upper-case of b. A byte c is in 'a'..='z' exactly when c + 0x1f,
/// as a signed byte, is below -102: one add and one signed compare, which the runtime
/// compiles to one instruction each (an unsigned compare takes several).
#[inline(always)]
fn up(mut b: Block) -> Block {
    for c in &mut b {
        let lower = ((c.wrapping_add(0x1f) as i8) < -102) as u8;
        *c ^= lower << 5;
    }
    b
}

plugin! { info: INFO, handler: transform(upper) }
