//! upper-wasm in Rust: the WebAssembly twin of the native upper plugin, written with the
//! Rust kit (pdk/rust). Each record's value becomes its ASCII upper-case, every other byte
//! unchanged; keys and headers are skipped. Build with build.sh.

use dataflare_pdk::{plugin, transform, Config, Error, Info, Writer};

const INFO: Info = Info {
    description: "ASCII upper-case of each value (the WebAssembly twin of upper, in Rust)",
    author: "DataFlare",
    ..Info::new("upper-wasm", "1.0.0")
};

fn upper(_cfg: &Config, value: &[u8], out: &mut Writer) -> Result<(), Error> {
    out.extend(value.iter().map(u8::to_ascii_uppercase));
    Ok(())
}

plugin! { info: INFO, handler: transform(upper) }
