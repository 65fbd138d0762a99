//! # dataflare_pdk: DataFlare plugins in Rust
//!
//! The guest side of DataFlare's WebAssembly plugin ABI (`docs/abi.md`, version 1) in Rust:
//! write a function over one record, a transform that writes each new value straight into the
//! output, or a function over the whole batch; name it in [`plugin!`]; build a `cdylib` for
//! `wasm32-wasi`; push the module. Every worker runs it.
//!
//! ```ignore
//! use dataflare_pdk::{plugin, transform, Config, Error, Info, Writer};
//!
//! const INFO: Info = Info {
//!     description: "ASCII upper-case of each value",
//!     ..Info::new("shout", "1.0.0")
//! };
//!
//! fn shout(_cfg: &Config, value: &[u8], out: &mut Writer) -> Result<(), Error> {
//!     out.extend(value.iter().map(u8::to_ascii_uppercase));
//!     Ok(())
//! }
//!
//! plugin! { info: INFO, handler: transform(shout) }
//! ```
//!
//! ## Building
//!
//! The kit is this one file, with no dependencies beyond `std`: no Cargo registry, no network.
//! With the plain compiler (Debian's `rustc` and `libstd-rust-dev-wasm32`, Rust 1.63 or newer),
//! build it as a library and link the plugin against it:
//!
//! ```sh
//! FLAGS="--edition 2021 --target wasm32-wasi -C opt-level=3 -C panic=abort"
//! rustc $FLAGS --crate-type=rlib --crate-name dataflare_pdk -o libdataflare_pdk.rlib pdk/rust/lib.rs
//! rustc $FLAGS --crate-type=cdylib -C lto -C strip=symbols \
//!     --extern dataflare_pdk=libdataflare_pdk.rlib -o shout.wasm shout.rs
//! dataflare plugin push shout shout.wasm
//! ```
//!
//! (Newer toolchains call the target `wasm32-wasip1`.) With Cargo, a `[lib]` whose `path` is
//! this file does the same. `examples/plugins/upper-rust/` is a complete plugin and its
//! `build.sh`.
//!
//! ## The three shapes
//!
//! - [`records`]: `fn(&Config, Record) -> Result<Output, Error>` — one record in; a new value
//!   ([`Output::Value`] or [`Output::Bytes`]), [`Output::Unchanged`] (8 bytes, no copy),
//!   [`Output::Dropped`], or `Err` for that record's error. The other records are unaffected.
//! - [`transform`]: `fn(&Config, &[u8], &mut Writer) -> Result<(), Error>` — one value in, the
//!   new value written to a [`Writer`] that is already the output region: no copy. The
//!   fastest shape for a plugin that computes a value per record; [`Writer::append`] hands out
//!   the value's bytes to fill in place, with no copy and no clearing.
//! - [`Handler`] implemented by any `Fn(&Batch, &mut Results) -> Result<(), Error>`: the whole
//!   [`Batch`] (header fields, configuration, records), with one result pushed to [`Results`]
//!   per record, in order.
//!
//! A function of the whole batch returning `Err` fails the batch (a *batch-level error*: the
//! host gets its code and message, no record gets a result); so does the optional
//! `config:` function of [`plugin!`], called with a job's [`Config`] before the first batch that
//! carries it, and again whenever it changes (a bad configuration is [`Code::InvalidInput`]).
//!
//! ## Capabilities
//!
//! [`kv_get`] and [`kv_get_into`] read a key of a NATS KV bucket through the worker's cache;
//! [`log`] writes a line into the worker's log. They call functions of host module
//! `dataflare` (`docs/abi.md`, "Capabilities"), which a module may import only as its policy
//! grants them: push it with `--grant kv:BUCKET` (per bucket) or `--grant log`. A plugin
//! imports only the functions it calls: one that never calls them imports neither and needs
//! no grant. Their errors say what failed and what to do:
//!
//! - a key without a value, a bucket not granted, a key NATS does not allow: code
//!   [`Code::InvalidInput`], meant as the record's error;
//! - a bucket that cannot be read now (no such bucket, NATS unreachable or slow): code
//!   [`Code::Unavailable`], meant as the batch's error (return it from a whole-batch function):
//!   the worker runs the batch again later. `examples/plugins/kv-lookup-rust/` does both.
//!
//! Outside WebAssembly (the kit's unit tests) there is no host: every call is
//! [`Code::Unavailable`].
//!
//! ## What the kit does for you
//!
//! It exports `df_abi_version`, `df_info`, `df_alloc` and `df_process`; keeps the input and
//! output regions from batch to batch; walks the batch message, checking every length against
//! its end (a malformed message is a batch error of code 1, never a panic or a read past the
//! message); writes one result entry per record; turns a value over 8 MiB into that record's
//! error (code 5, too large); cuts error messages to 64 KiB. A batch function that gives too
//! few or too many results fails its batch.
//!
//! ## Speed
//!
//! The runtime checks the batch's deadline at every iteration of a guest's loops, and a
//! `memory.copy` or `memory.fill` is a call out of compiled code: each costs more than the
//! kit's own work on a record. The kit walks records 8 per loop iteration and keeps its output
//! buffer initialized from batch to batch, so that [`Writer::append`] needs neither a copy nor
//! a fill. In a plugin, work in fixed-size blocks (`[u8; 16]`, which `-C
//! target-feature=+simd128` turns into one SIMD operation) with straight-line code for short
//! values, as `examples/plugins/upper-rust/upper.rs` does; build with `-C opt-level=3` (`s`
//! leaves such helpers as calls and loops, 28 times slower there). `Writer`'s `Extend` and
//! `extend_from_slice` are convenient, not fast.
//!
//! ## Panics
//!
//! WebAssembly has no unwinding here: a panic in a plugin function (an `unwrap` on `None`, an
//! index out of range) aborts, which traps. The worker fails the batch with code 7 (wasm trap)
//! quoting the start of what the guest wrote to stderr, the panic message with its file and
//! line, and replaces the instance. The kit itself does not panic on anything the host sends.
//! For a record-level failure, return `Err`: it costs nothing beyond the entry.
//!
//! ## Safety
//!
//! The kit denies `unsafe` code (`#![deny(unsafe_code)]`) everywhere but in one small private
//! module, which calls the two functions of host module `dataflare` (calling an imported
//! function is `unsafe` in Rust) with pointers and lengths taken from live slices and `str`s,
//! and marks as written the bytes the host wrote into a `Vec`'s spare capacity; each `unsafe`
//! block says why it is sound. The ABI itself needs none: the host writes each batch into a
//! `Vec<u8>` the kit owns and handed out with `df_alloc`; the kit checks that `df_process` names
//! that region and reads it as a slice, and returns the address of its output buffer and the
//! length it wrote. The exports that [`plugin!`] writes into the plugin crate take and return
//! integers only.
#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;

/// The version of the plugin ABI the kit implements, returned by `df_abi_version`.
pub const ABI_VERSION: u32 = 1;

/// The largest value a result may carry, in bytes (the wire format's limit, 8 MiB); a larger
/// one becomes the record's error, of code [`Code::TooLarge`].
pub const MAX_VALUE_SIZE: usize = 8 << 20;

/// The longest error message a result carries, in bytes (64 KiB); a longer one is cut, at a
/// character boundary.
pub const MAX_ERROR_SIZE: usize = 64 << 10;

/// The largest batch message `df_alloc` accepts, in bytes: the host never lets guest memory
/// grow past 2 GiB.
const MAX_INPUT: u32 = 0x7fff_0000;

/// Code is the error code of a per-record or batch-level error: the wire format's codes. A
/// plugin normally uses [`Code::InvalidInput`] or [`Code::Processing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    /// Anything else.
    Unknown = 0,
    /// The record (or the batch's configuration) is not what the plugin accepts.
    InvalidInput = 1,
    /// The plugin could not process a record it accepts.
    Processing = 2,
    /// The plugin panicked.
    Panic = 3,
    /// The batch ran past its deadline.
    DeadlineExceeded = 4,
    /// A value or a batch is too large.
    TooLarge = 5,
    /// No plugin of that name.
    UnknownPlugin = 6,
    /// The WebAssembly guest trapped.
    WasmTrap = 7,
    /// The record failed every delivery.
    Poison = 8,
    /// A resource the plugin needs is unavailable for now.
    Unavailable = 9,
}

/// Error is a per-record error (returned for one record) or a batch-level error (returned for a
/// batch or a configuration): a [`Code`] and a UTF-8 message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: Code,
    message: String,
}

impl Error {
    /// New returns an error of code with message.
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    /// InvalidInput returns an error of code [`Code::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Error {
        Error::new(Code::InvalidInput, message)
    }

    /// Processing returns an error of code [`Code::Processing`].
    pub fn processing(message: impl Into<String>) -> Error {
        Error::new(Code::Processing, message)
    }

    /// Code returns the error's code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// Message returns the error's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// A message converts to an error of code [`Code::Processing`], so that `?` works on
/// `Result<_, String>`.
impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::processing(message)
    }
}

/// A message converts to an error of code [`Code::Processing`].
impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::processing(message)
    }
}

/// Host holds the calls of host module `dataflare`: the kit's only `unsafe` code. Outside
/// WebAssembly there is no host, and every call answers "unavailable".
#[allow(unsafe_code)]
mod host {
    /// Unavailable is kv_get's result when the bucket cannot be read; outside WebAssembly,
    /// every call's.
    #[cfg(not(target_arch = "wasm32"))]
    const UNAVAILABLE: i32 = -4;

    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "dataflare")]
    extern "C" {
        #[link_name = "kv_get"]
        fn df_kv_get(
            bucket_ptr: *const u8,
            bucket_len: usize,
            key_ptr: *const u8,
            key_len: usize,
            out_ptr: *mut u8,
            out_cap: usize,
        ) -> i32;

        #[link_name = "log"]
        fn df_log(level: i32, msg_ptr: *const u8, msg_len: usize) -> i32;
    }

    /// Kv_get calls the host's kv_get with out's spare capacity as the room for the value: its
    /// result n is the value's length, or negative. When 0 <= n <= the room, the value is
    /// appended to out; otherwise out is left as it was.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn kv_get(bucket: &str, key: &str, out: &mut Vec<u8>) -> i32 {
        let len = out.len();
        let room = out.spare_capacity_mut();
        let cap = room.len();
        // SAFETY: every pointer and length comes from a live `&str` or from the live spare
        // capacity of `out`, borrowed for the whole call; the host reads only
        // [bucket_ptr, bucket_ptr+bucket_len) and [key_ptr, key_ptr+key_len), writes at most
        // out_cap bytes at out_ptr, and keeps none of the pointers after it returns.
        let n = unsafe {
            df_kv_get(
                bucket.as_ptr(),
                bucket.len(),
                key.as_ptr(),
                key.len(),
                room.as_mut_ptr().cast::<u8>(),
                cap,
            )
        };
        if n >= 0 && n as usize <= cap {
            // SAFETY: when its result n is at most out_cap, the host has copied the n bytes of
            // the value to out_ptr, so out's first len+n bytes are initialized, and len+n is
            // within out's capacity.
            unsafe { out.set_len(len + n as usize) };
        }
        n
    }

    /// Log calls the host's log with msg: 0 written, 1 dropped, or negative.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn log(level: i32, msg: &str) -> i32 {
        // SAFETY: the pointer and length come from a live `&str`, borrowed for the whole call;
        // the host only reads [msg_ptr, msg_ptr+msg_len) and keeps no pointer.
        unsafe { df_log(level, msg.as_ptr(), msg.len()) }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn kv_get(_bucket: &str, _key: &str, _out: &mut Vec<u8>) -> i32 {
        UNAVAILABLE
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn log(_level: i32, _msg: &str) -> i32 {
        UNAVAILABLE
    }
}

/// Results of the host functions (`docs/abi.md`, "Capabilities").
const KV_NOT_FOUND: i32 = -1;
const CAP_DENIED: i32 = -2;
const CAP_BAD_ARGS: i32 = -3;
const LOG_DROPPED: i32 = 1;

/// Kv_get returns the value of key in the NATS KV bucket, read through the worker's cache. The
/// module must be pushed with `--grant kv:BUCKET`; calling this function (or [`kv_get_into`])
/// makes it import `kv_get` from host module `dataflare`.
///
/// Its errors: a key without a value (`bucket "users", key "x": not found`), a bucket not
/// granted (`… not granted to this module (push it with --grant kv:users)`) and a key NATS does
/// not allow (letters, digits and `-/_=.`; no leading, trailing or double `.`) are of code
/// [`Code::InvalidInput`]: a record's error. A bucket that cannot be read now is of code
/// [`Code::Unavailable`]: return it as the batch's error, and the worker runs the batch again
/// later.
pub fn kv_get(bucket: &str, key: &str) -> Result<Vec<u8>, Error> {
    let mut v = Vec::new();
    kv_get_into(&mut v, bucket, key)?;
    Ok(v)
}

/// Kv_get_into is [`kv_get`] appending the value to out: when out has the room (capacity
/// beyond its length), the host writes the value there and nothing is allocated, so a buffer
/// cleared and reused from record to record costs no allocation once it is large enough. On
/// an error, out is left as it was.
pub fn kv_get_into(out: &mut Vec<u8>, bucket: &str, key: &str) -> Result<(), Error> {
    loop {
        let room = out.capacity() - out.len();
        let n = host::kv_get(bucket, key, out);
        if n < 0 {
            return Err(cap_error(n, Some((bucket, key))));
        }
        let n = n as usize;
        if n <= room {
            return Ok(());
        }
        // Too little room: nothing was written. Ask again with room for the value, which may
        // have changed meanwhile. The room grows as a Vec's does (at least doubling), so that
        // appending value after value to one buffer does not copy it for each.
        if out.try_reserve(n).is_err() {
            return Err(Error::new(
                Code::TooLarge,
                format!(
                    "dataflare_pdk: bucket {:?}, key {:?}: no memory for its value of {} bytes",
                    bucket, key, n
                ),
            ));
        }
    }
}

/// Level is the level of a [`log`] line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Level {
    /// Debug.
    Debug = 0,
    /// Info.
    Info = 1,
    /// Warn.
    Warn = 2,
    /// Error.
    Error = 3,
}

/// Log writes msg as one line into the worker's log, with the module named. The module must
/// be pushed with `--grant log`; calling this function makes it import `log` from host module
/// `dataflare`. It returns `Ok(true)` when the line was written and `Ok(false)` when it was
/// dropped: lines over the module's rate on the worker (10 a second by default, in bursts of
/// 50) are counted, and the next line written says how many. A line is cut at 1,024 bytes.
/// Its errors are of code [`Code::InvalidInput`] (not granted, a message over 1 MiB).
pub fn log(level: Level, msg: &str) -> Result<bool, Error> {
    match host::log(level as i32, msg) {
        0 => Ok(true),
        LOG_DROPPED => Ok(false),
        n => Err(cap_error(n, None)),
    }
}

/// Cap_error returns the error of a host function's negative result n: of kv_get for
/// (bucket, key), else of log.
fn cap_error(n: i32, kv: Option<(&str, &str)>) -> Error {
    let (what, grant) = match kv {
        Some((bucket, key)) => (
            format!("bucket {:?}, key {:?}", bucket, key),
            format!("kv:{}", bucket),
        ),
        None => ("log".to_string(), "log".to_string()),
    };
    match n {
        KV_NOT_FOUND => Error::invalid_input(format!("dataflare_pdk: {}: not found", what)),
        CAP_DENIED => Error::invalid_input(format!(
            "dataflare_pdk: {}: not granted to this module (push it with --grant {})",
            what, grant
        )),
        CAP_BAD_ARGS if kv.is_some() => Error::invalid_input(format!(
            "dataflare_pdk: {}: refused by the host (a key NATS does not allow: letters, digits \
             and -/_=., no leading, trailing or double dot; or a bucket over 255 bytes, a key \
             over 4,096)",
            what
        )),
        CAP_BAD_ARGS => Error::invalid_input(format!(
            "dataflare_pdk: {}: refused by the host (a message over 1 MiB)",
            what
        )),
        _ => Error::new(
            Code::Unavailable,
            format!(
                "dataflare_pdk: {}: unavailable now (the worker's log says why)",
                what
            ),
        ),
    }
}

/// Type is what a plugin does, as its [`Info`] tells the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// Changes values.
    Transformer,
    /// Drops some records.
    Filter,
    /// Adds to values.
    Enricher,
    /// Answers an error for invalid records.
    Validator,
    /// Produces records.
    Source,
    /// Consumes records.
    Sink,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Transformer => "transformer",
            Type::Filter => "filter",
            Type::Enricher => "enricher",
            Type::Validator => "validator",
            Type::Source => "source",
            Type::Sink => "sink",
        }
    }
}

/// Info describes a plugin: `df_info` returns it as JSON. Build one with [`Info::new`] and
/// struct update syntax (it is a `const`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// The plugin's name (required).
    pub name: &'static str,
    /// The plugin's version (required).
    pub version: &'static str,
    /// What the plugin does.
    pub kind: Type,
    /// One line on what the plugin does.
    pub description: &'static str,
    /// Who wrote it.
    pub author: &'static str,
}

impl Info {
    /// New returns the info of a transformer named name, at version, with no description or
    /// author.
    pub const fn new(name: &'static str, version: &'static str) -> Info {
        Info {
            name,
            version,
            kind: Type::Transformer,
            description: "",
            author: "",
        }
    }

    /// To_json returns the info as the UTF-8 JSON object `df_info` returns.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(128);
        s.push('{');
        json_field(&mut s, "name", self.name);
        s.push(',');
        json_field(&mut s, "version", self.version);
        s.push(',');
        json_field(&mut s, "type", self.kind.name());
        s.push(',');
        json_field(&mut s, "description", self.description);
        s.push(',');
        json_field(&mut s, "author", self.author);
        s.push(',');
        json_field(&mut s, "api_version", "1.0");
        s.push('}');
        s
    }
}

fn json_field(s: &mut String, key: &str, value: &str) {
    json_string(s, key);
    s.push(':');
    json_string(s, value);
}

fn json_string(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = fmt::Write::write_fmt(s, format_args!("\\u{:04x}", c as u32));
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

/// Reader walks a batch message, checking every length against its end.
#[derive(Clone)]
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn u32(&mut self) -> Option<u32> {
        let s = self.b.get(self.at..self.at.checked_add(4)?)?;
        self.at += 4;
        Some(u32::from_le_bytes(<[u8; 4]>::try_from(s).ok()?))
    }

    #[inline(always)]
    fn u64(&mut self) -> Option<u64> {
        let s = self.b.get(self.at..self.at.checked_add(8)?)?;
        self.at += 8;
        Some(u64::from_le_bytes(<[u8; 8]>::try_from(s).ok()?))
    }

    #[inline(always)]
    fn bytes(&mut self, n: u32) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n as usize)?)?;
        self.at += n as usize;
        Some(s)
    }

    /// str reads a wire-format `str`: a u32 length, then that many bytes.
    #[inline(always)]
    fn str(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.bytes(n)
    }

    /// skip_pairs skips n pairs of `str`s.
    #[inline(always)]
    fn skip_pairs(&mut self, n: u32) -> Option<()> {
        for _ in 0..n {
            self.str()?;
            self.str()?;
        }
        Some(())
    }

    /// record reads one record.
    #[inline(always)]
    fn record(&mut self) -> Option<Record<'a>> {
        let key_len = self.u32()?;
        let value_len = self.u32()?;
        let header_count = self.u32()?;
        let timestamp = self.u64()? as i64;
        let key = self.bytes(key_len)?;
        let value = self.bytes(value_len)?;
        let mut headers = Headers {
            r: Reader { b: self.b, at: self.at },
            left: header_count,
        };
        if header_count > 0 {
            self.skip_pairs(header_count)?;
            headers.r.b = &self.b[..self.at];
        }
        Some(Record {
            key,
            value,
            timestamp,
            headers,
        })
    }
}

/// Config is a job's plugin configuration: `dataflare submit --config k=v` pairs, sorted by key,
/// keys unique. It is the same for every batch of a job.
#[derive(Clone)]
pub struct Config<'a> {
    raw: &'a [u8],
    count: u32,
}

impl<'a> Config<'a> {
    /// Get returns the value of key, or `None` when the configuration has no such key or its
    /// value is not UTF-8 (then use [`Config::get_bytes`]).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        std::str::from_utf8(self.get_bytes(key)?).ok()
    }

    /// Get_bytes returns the value of key as bytes, or `None` when there is no such key.
    pub fn get_bytes(&self, key: &str) -> Option<&'a [u8]> {
        self.iter().find(|(k, _)| *k == key.as_bytes()).map(|(_, v)| v)
    }

    /// Len returns the number of pairs.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Is_empty reports whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iter returns the pairs (key, value), in key order.
    pub fn iter(&self) -> Headers<'a> {
        Headers {
            r: Reader {
                b: self.raw,
                at: 0,
            },
            left: self.count,
        }
    }
}

impl fmt::Debug for Config<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Record is one record of a batch. Its slices borrow the batch message: they are valid during
/// the call that received them.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// The record's key (possibly empty).
    pub key: &'a [u8],
    /// The record's value (possibly empty).
    pub value: &'a [u8],
    /// Unix time in nanoseconds; 0 means unset.
    pub timestamp: i64,
    headers: Headers<'a>,
}

impl<'a> Record<'a> {
    /// Headers returns the record's headers (key, value), in order; keys may repeat.
    pub fn headers(&self) -> Headers<'a> {
        self.headers.clone()
    }
}

/// Headers iterates over pairs of byte strings: a record's headers, or a [`Config`]'s pairs.
#[derive(Clone, Debug)]
pub struct Headers<'a> {
    r: Reader<'a>,
    left: u32,
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.b.len() - self.at.min(self.b.len()))
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let pair = (|| Some((self.r.str()?, self.r.str()?)))();
        if pair.is_none() {
            self.left = 0; // not reached: the kit checked the lengths
        }
        pair
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// The state of a batch's records section: walked to its end or not, found malformed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    Unread,
    Whole,
    Malformed,
}

/// Batch is one batch message: its header fields, the job's configuration and its records.
pub struct Batch<'a> {
    /// The job's id.
    pub job: &'a [u8],
    /// The name the plugin runs under.
    pub plugin: &'a [u8],
    /// The pinned module digest (`sha256:<hex>`).
    pub digest: &'a [u8],
    /// The batch's number within its job.
    pub seq: u64,
    /// The job-wide index of the batch's first record.
    pub base: u64,
    /// The job's plugin configuration.
    pub config: Config<'a>,
    records: &'a [u8],
    count: u32,
    walk: Cell<Walk>,
}

impl<'a> Batch<'a> {
    /// Parse reads a batch message's header; the records are checked as they are read.
    fn parse(msg: &'a [u8]) -> Option<Batch<'a>> {
        let mut r = Reader { b: msg, at: 0 };
        if r.bytes(4)? != b"DFB\x01" {
            return None;
        }
        let header_len = r.u32()? as usize;
        let count = r.u32()?;
        let flags = r.u32()?;
        let seq = r.u64()?;
        let base = r.u64()?;
        if flags != 0 || header_len > msg.len() || header_len < 32 {
            return None;
        }
        r.b = &msg[..header_len];
        let job = r.str()?;
        let plugin = r.str()?;
        let digest = r.str()?;
        let config_count = r.u32()?;
        let config_start = r.at;
        r.skip_pairs(config_count)?;
        Some(Batch {
            job,
            plugin,
            digest,
            seq,
            base,
            config: Config {
                raw: &msg[config_start..r.at],
                count: config_count,
            },
            records: &msg[header_len..],
            count,
            walk: Cell::new(Walk::Unread),
        })
    }

    /// Len returns the number of records.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Is_empty reports whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records returns the records, in order. A record that runs past the message ends the
    /// iteration early, and the kit fails the batch (code 1) whatever the function returns.
    pub fn records(&self) -> Records<'_, 'a> {
        Records {
            batch: self,
            r: Reader {
                b: self.records,
                at: 0,
            },
            left: self.count,
        }
    }

    /// Check walks what no function read; it reports whether the records section holds
    /// exactly the batch's records.
    fn check(&self) -> bool {
        if self.walk.get() == Walk::Unread {
            for _ in self.records() {}
        }
        self.walk.get() == Walk::Whole
    }
}

/// Records iterates over a batch's records (see [`Batch::records`]).
pub struct Records<'b, 'a> {
    batch: &'b Batch<'a>,
    r: Reader<'a>,
    left: u32,
}

impl<'a> Iterator for Records<'_, 'a> {
    type Item = Record<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<Record<'a>> {
        if self.left == 0 {
            if self.batch.walk.get() == Walk::Unread {
                let whole = self.r.at == self.r.b.len();
                self.batch
                    .walk
                    .set(if whole { Walk::Whole } else { Walk::Malformed });
            }
            return None;
        }
        match self.r.record() {
            Some(rec) => {
                self.left -= 1;
                Some(rec)
            }
            None => {
                self.left = 0;
                self.batch.walk.set(Walk::Malformed);
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// Output is what a [`records`] function makes of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<'a> {
    /// The record's new value.
    Value(Vec<u8>),
    /// The record's new value, borrowed (a part of the record, or a constant): copied once,
    /// into the output.
    Bytes(&'a [u8]),
    /// The record's value as it came: 8 bytes of output, no copy.
    Unchanged,
    /// The record is filtered out.
    Dropped,
}

/// Out is the output region: a buffer kept initialized (zeros when it grows, then whatever
/// earlier batches left) and the end of what this batch wrote. Keeping the bytes past the end
/// initialized lets [`Writer::append`] hand them out to fill, with no copy and no clearing.
struct Out {
    buf: Vec<u8>,
    pos: usize,
}

impl Out {
    /// Room returns the n bytes after the end, growing the buffer when they are not there.
    #[inline(always)]
    fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.pos.saturating_add(n);
        if end > self.buf.len() {
            self.grow(end);
        }
        &mut self.buf[self.pos..end]
    }

    /// Put appends b.
    #[inline(always)]
    fn put(&mut self, b: &[u8]) {
        self.room(b.len()).copy_from_slice(b);
        self.pos += b.len();
    }

    /// Grow makes the buffer at least end bytes long (aborting, which traps, when memory
    /// cannot grow: the kit reserves the usual size up front, with a clean error).
    #[cold]
    #[inline(never)]
    fn grow(&mut self, end: usize) {
        let n = end.max(self.buf.len().saturating_mul(2)).max(4096);
        self.buf.resize(n, 0);
    }

    /// Try_room makes the buffer at least end bytes long, or reports that memory cannot grow.
    fn try_room(&mut self, end: usize) -> bool {
        if end <= self.buf.len() {
            return true;
        }
        if self.buf.try_reserve_exact(end - self.buf.len()).is_err() {
            return false;
        }
        self.buf.resize(end, 0);
        true
    }
}

/// Writer is where a [`transform`] function (or [`Results::write`]) writes one record's new
/// value: the output region itself, so the value is written once. It starts empty.
pub struct Writer<'o> {
    out: &'o mut Out,
    start: usize,
}

impl Writer<'_> {
    /// Len returns the number of bytes written.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.out.pos - self.start
    }

    /// Is_empty reports whether nothing has been written.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Push appends one byte.
    #[inline(always)]
    pub fn push(&mut self, b: u8) {
        self.out.room(1)[0] = b;
        self.out.pos += 1;
    }

    /// Extend_from_slice appends b.
    #[inline(always)]
    pub fn extend_from_slice(&mut self, b: &[u8]) {
        self.out.put(b)
    }

    /// Append lengthens the value by n bytes and returns them, to be filled: the fastest way to
    /// write a value, with no copy and no clearing. Their content before that is unspecified
    /// (what earlier batches left, or zeros). To write past what the value needs (say, whole
    /// 16-byte blocks), append more and [`Writer::truncate`] afterwards.
    #[inline(always)]
    pub fn append(&mut self, n: usize) -> &mut [u8] {
        self.out.room(n);
        let at = self.out.pos;
        self.out.pos += n;
        &mut self.out.buf[at..at + n]
    }

    /// Reserve makes room for at least n more bytes.
    #[inline(always)]
    pub fn reserve(&mut self, n: usize) {
        self.out.room(n);
    }

    /// Resize makes the value n bytes long, appending copies of fill or cutting it.
    #[inline]
    pub fn resize(&mut self, n: usize, fill: u8) {
        let len = self.len();
        if n <= len {
            self.truncate(n)
        } else {
            for b in self.append(n - len) {
                *b = fill;
            }
        }
    }

    /// Truncate cuts the value to n bytes; it does nothing when the value is not longer.
    #[inline(always)]
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.out.pos = self.start + n;
        }
    }

    /// As_mut_slice returns the bytes written so far, to change them in place.
    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.out.buf[self.start..self.out.pos]
    }

    /// As_slice returns the bytes written so far.
    #[inline(always)]
    pub fn as_slice(&self) -> &[u8] {
        &self.out.buf[self.start..self.out.pos]
    }
}

impl Extend<u8> for Writer<'_> {
    #[inline]
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        let iter = iter.into_iter();
        let (lo, _) = iter.size_hint();
        self.out.room(lo);
        for b in iter {
            self.push(b);
        }
    }
}

impl<'b> Extend<&'b u8> for Writer<'_> {
    #[inline]
    fn extend<I: IntoIterator<Item = &'b u8>>(&mut self, iter: I) {
        self.extend(iter.into_iter().copied())
    }
}

impl io::Write for Writer<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.out.put(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.out.put(s.as_bytes());
        Ok(())
    }
}

/// The result entry statuses of the wire format.
const VALUE: u8 = 0;
const DROPPED: u8 = 1;
const FAILED: u8 = 2;
const UNCHANGED: u8 = 3;

/// Results is where a batch's results go, one per record, in record order: the output region.
pub struct Results<'o> {
    out: &'o mut Out,
    n: usize,
}

impl Results<'_> {
    /// Len returns the number of results given so far.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Is_empty reports whether no result has been given.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    #[inline(always)]
    fn entry(&mut self, status: u8, code: u8, len: usize) {
        let l = (len as u32).to_le_bytes();
        self.out
            .put(&[status, code, 0, 0, l[0], l[1], l[2], l[3]]);
        self.n += 1;
    }

    /// Value gives the next record's new value; one over [`MAX_VALUE_SIZE`] becomes the record's
    /// error, of code [`Code::TooLarge`].
    #[inline]
    pub fn value(&mut self, v: &[u8]) {
        if v.len() > MAX_VALUE_SIZE {
            return self.error(&too_large(v.len()));
        }
        self.entry(VALUE, 0, v.len());
        self.out.put(v);
    }

    /// Unchanged gives the next record's value as it came: 8 bytes, no copy either way.
    #[inline]
    pub fn unchanged(&mut self) {
        self.entry(UNCHANGED, 0, 0)
    }

    /// Dropped filters the next record out.
    #[inline]
    pub fn dropped(&mut self) {
        self.entry(DROPPED, 0, 0)
    }

    /// Error gives the next record's error; the other records are unaffected.
    pub fn error(&mut self, e: &Error) {
        let msg = cut(&e.message, MAX_ERROR_SIZE);
        self.entry(FAILED, e.code as u8, msg.len());
        self.out.put(msg.as_bytes());
    }

    /// Output gives the next record's result as a [`records`] function returns it.
    #[inline]
    pub fn output(&mut self, r: Result<Output<'_>, Error>) {
        match r {
            Ok(Output::Value(v)) => self.value(&v),
            Ok(Output::Bytes(v)) => self.value(v),
            Ok(Output::Unchanged) => self.unchanged(),
            Ok(Output::Dropped) => self.dropped(),
            Err(e) => self.error(&e),
        }
    }

    /// Write gives the next record's new value, which f writes to a [`Writer`] that is the
    /// output itself; an `Err` from f (or a value over [`MAX_VALUE_SIZE`]) becomes the record's
    /// error instead, and what f wrote is discarded.
    #[inline(always)]
    pub fn write<F>(&mut self, f: F)
    where
        F: FnOnce(&mut Writer<'_>) -> Result<(), Error>,
    {
        let start = self.out.pos;
        self.entry(VALUE, 0, 0);
        let mut w = Writer {
            out: self.out,
            start: start + 8,
        };
        let res = f(&mut w);
        let n = w.len();
        match res {
            Ok(()) if n <= MAX_VALUE_SIZE => {
                self.out.buf[start + 4..start + 8].copy_from_slice(&(n as u32).to_le_bytes());
            }
            Ok(()) => {
                self.out.pos = start;
                self.n -= 1;
                self.error(&too_large(n));
            }
            Err(e) => {
                self.out.pos = start;
                self.n -= 1;
                self.error(&e);
            }
        }
    }
}

fn too_large(n: usize) -> Error {
    Error::new(
        Code::TooLarge,
        format!(
            "dataflare_pdk: value of {} bytes is over the {}-byte limit",
            n, MAX_VALUE_SIZE
        ),
    )
}

/// cut returns s cut to at most max bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// Handler is a plugin: it gives one result per record of a batch, in order, or fails the
/// batch. [`records`] and [`transform`] make one of a function over one record; any
/// `Fn(&Batch, &mut Results) -> Result<(), Error>` is one.
pub trait Handler {
    /// Process gives `results` one result per record of `batch`, or returns the batch's error.
    fn process(&self, batch: &Batch<'_>, results: &mut Results<'_>) -> Result<(), Error>;
}

impl<F> Handler for F
where
    F: Fn(&Batch<'_>, &mut Results<'_>) -> Result<(), Error>,
{
    #[inline(always)]
    fn process(&self, batch: &Batch<'_>, results: &mut Results<'_>) -> Result<(), Error> {
        self(batch, results)
    }
}

/// Unrolled runs $body for each record of the iterator $recs, 8 records per loop iteration:
/// the runtime checks the batch's deadline at every iteration of a guest's loop, which costs
/// more than the kit's own work on a record.
macro_rules! unrolled {
    ($recs:ident, $rec:ident => $body:expr) => {
        loop {
            unrolled!(@one $recs, $rec => $body);
            unrolled!(@one $recs, $rec => $body);
            unrolled!(@one $recs, $rec => $body);
            unrolled!(@one $recs, $rec => $body);
            unrolled!(@one $recs, $rec => $body);
            unrolled!(@one $recs, $rec => $body);
            unrolled!(@one $recs, $rec => $body);
            unrolled!(@one $recs, $rec => $body);
        }
    };
    (@one $recs:ident, $rec:ident => $body:expr) => {
        match $recs.next() {
            Some($rec) => $body,
            None => break,
        }
    };
}

/// RecordFn is the [`Handler`] of a function over one record (see [`records`]).
pub struct RecordFn<F>(pub F);

/// Records makes a [`Handler`] of f, called once per record with the job's configuration: its
/// [`Output`] is the record's result, its `Err` the record's error.
pub fn records<F>(f: F) -> RecordFn<F>
where
    F: for<'c, 'a> Fn(&'c Config<'a>, Record<'a>) -> Result<Output<'a>, Error>,
{
    RecordFn(f)
}

impl<F> Handler for RecordFn<F>
where
    F: for<'c, 'a> Fn(&'c Config<'a>, Record<'a>) -> Result<Output<'a>, Error>,
{
    #[inline(always)]
    fn process(&self, batch: &Batch<'_>, results: &mut Results<'_>) -> Result<(), Error> {
        let mut recs = batch.records();
        unrolled!(recs, rec => {
            let value = rec.value;
            match (self.0)(&batch.config, rec) {
                // The record's own value, given back: "unchanged", no copy.
                Ok(Output::Bytes(v))
                    if !v.is_empty() && v.len() == value.len() && v.as_ptr() == value.as_ptr() =>
                {
                    results.unchanged()
                }
                r => results.output(r),
            }
        });
        Ok(())
    }
}

/// TransformFn is the [`Handler`] of a function that writes each new value (see [`transform`]).
pub struct TransformFn<F>(pub F);

/// Transform makes a [`Handler`] of f, called once per record with the job's configuration and
/// the record's value: it appends the new value to the [`Writer`], which is the output region
/// itself. Its `Err` is the record's error.
pub fn transform<F>(f: F) -> TransformFn<F>
where
    F: Fn(&Config<'_>, &[u8], &mut Writer<'_>) -> Result<(), Error>,
{
    TransformFn(f)
}

impl<F> Handler for TransformFn<F>
where
    F: Fn(&Config<'_>, &[u8], &mut Writer<'_>) -> Result<(), Error>,
{
    #[inline(always)]
    fn process(&self, batch: &Batch<'_>, results: &mut Results<'_>) -> Result<(), Error> {
        let cfg = &batch.config;
        let mut recs = batch.records();
        unrolled!(recs, rec => results.write(|w| (self.0)(cfg, rec.value, w)));
        Ok(())
    }
}

/// ConfigFn checks a job's configuration (see [`plugin!`]).
pub type ConfigFn = fn(&Config<'_>) -> Result<(), Error>;

/// Abi holds what [`plugin!`]'s exports call; a plugin has no other use for it.
pub mod abi {
    use super::*;

    /// Kit is an instance's state: the regions it reuses from batch to batch.
    struct Kit {
        /// The host's input region (df_alloc).
        input: Vec<u8>,
        /// The last output: valid until the next call.
        output: Out,
        /// The info's JSON.
        info: Vec<u8>,
        /// The configuration section last accepted by the config function.
        config: Option<Vec<u8>>,
    }

    thread_local! {
        // A plugin instance runs one call at a time on its one thread.
        static KIT: RefCell<Kit> = const {
            RefCell::new(Kit {
                input: Vec::new(),
                output: Out { buf: Vec::new(), pos: 0 },
                info: Vec::new(),
                config: None,
            })
        };
    }

    /// Pack returns the ABI's packed pointer/length of b[..len], with bit 63 set for a batch
    /// error.
    fn pack(b: &mut Vec<u8>, len: usize, failed: bool) -> u64 {
        let ptr = b.as_mut_ptr() as usize as u64;
        (failed as u64) << 63 | ptr << 32 | len.min(b.len()) as u64
    }

    /// Info is `df_info`: the packed pointer/length of info's JSON.
    pub fn info(info: &Info) -> u64 {
        KIT.with(|k| match k.try_borrow_mut() {
            Ok(mut k) => {
                if k.info.is_empty() {
                    k.info = info.to_json().into_bytes();
                }
                let n = k.info.len();
                pack(&mut k.info, n, false)
            }
            Err(_) => 0,
        })
    }

    /// Alloc is `df_alloc`: a region of at least size bytes that the host may write to until the
    /// next call, or 0 when memory cannot grow that far.
    pub fn alloc(size: u32) -> u32 {
        if size > MAX_INPUT {
            return 0;
        }
        KIT.with(|k| {
            let mut k = match k.try_borrow_mut() {
                Ok(k) => k,
                Err(_) => return 0,
            };
            let need = (size as usize).max(1);
            if k.input.len() < need {
                k.input = Vec::new(); // free the old region first
                if k.input.try_reserve_exact(need).is_err() {
                    return 0;
                }
                k.input.resize(need, 0);
            }
            k.input.as_mut_ptr() as usize as u32
        })
    }

    /// Process is `df_process`: it runs h over the batch message the host wrote at ptr (the
    /// region alloc returned) and returns the packed pointer/length of the results, or of one
    /// error entry with bit 63 set.
    #[inline(always)]
    pub fn process<H: Handler>(ptr: u32, len: u32, h: &H, on_config: Option<ConfigFn>) -> u64 {
        KIT.with(|k| {
            let mut k = match k.try_borrow_mut() {
                Ok(k) => k,
                Err(_) => return 1 << 63, // not reached: one call at a time
            };
            let k = &mut *k;
            k.output.pos = 0;
            let res = if k.input.is_empty()
                || ptr != k.input.as_mut_ptr() as usize as u32
                || len as usize > k.input.len()
            {
                Err(Error::invalid_input(format!(
                    "dataflare_pdk: df_process({:#x}, {}) is outside the region df_alloc returned",
                    ptr, len
                )))
            } else {
                run(&k.input[..len as usize], &mut k.output, &mut k.config, h, on_config)
            };
            let out = &mut k.output;
            match res {
                Ok(()) => pack(&mut out.buf, out.pos, false),
                Err(e) => {
                    out.pos = 0;
                    Results { out, n: 0 }.error(&e);
                    pack(&mut out.buf, out.pos, true)
                }
            }
        })
    }

    fn malformed() -> Error {
        Error::invalid_input("dataflare_pdk: malformed batch message")
    }

    #[inline(always)]
    fn run<H: Handler>(
        msg: &[u8],
        out: &mut Out,
        accepted: &mut Option<Vec<u8>>,
        h: &H,
        on_config: Option<ConfigFn>,
    ) -> Result<(), Error> {
        let batch = Batch::parse(msg).ok_or_else(malformed)?;
        if let Some(f) = on_config {
            if accepted.as_deref() != Some(batch.config.raw) {
                *accepted = None;
                f(&batch.config)?;
                *accepted = Some(batch.config.raw.to_vec());
            }
        }
        // The output is rarely longer than the batch (a record costs at least 20 bytes of
        // framing in and 8 bytes of entry out), and a transform may write a little past a
        // value's end: room for both, grown once and kept from batch to batch.
        if !out.try_room(msg.len() + 1024) {
            return Err(Error::new(
                Code::TooLarge,
                "dataflare_pdk: no memory for the output",
            ));
        }
        let mut results = Results { out, n: 0 };
        h.process(&batch, &mut results)?;
        if !batch.check() {
            return Err(malformed());
        }
        if results.n != batch.len() {
            return Err(Error::processing(format!(
                "dataflare_pdk: {} results for {} records",
                results.n,
                batch.len()
            )));
        }
        Ok(())
    }
}

/// Plugin writes the ABI's exports for a plugin: its [`Info`], its [`Handler`] and, optionally,
/// a [`ConfigFn`] called before the first batch of each configuration (its `Err` fails the
/// batch). Use it once, in the plugin crate (a `cdylib`):
///
/// ```ignore
/// plugin! { info: INFO, handler: transform(shout) }
/// plugin! { info: INFO, handler: records(redact), config: check_config }
/// plugin! { info: INFO, handler: |batch: &Batch, results: &mut Results| { /* … */ Ok(()) } }
/// ```
#[macro_export]
macro_rules! plugin {
    (info: $info:expr, handler: $handler:expr $(, config: $config:expr)? $(,)?) => {
        /// df_abi_version returns the version of the plugin ABI.
        #[no_mangle]
        pub extern "C" fn df_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        /// df_info returns the packed pointer/length of the plugin's info, as JSON.
        #[no_mangle]
        pub extern "C" fn df_info() -> u64 {
            $crate::abi::info(&$info)
        }

        /// df_alloc returns a region of at least size bytes for the host's batches, or 0.
        #[no_mangle]
        pub extern "C" fn df_alloc(size: u32) -> u32 {
            $crate::abi::alloc(size)
        }

        /// df_process runs the plugin over the batch message at ptr.
        #[no_mangle]
        pub extern "C" fn df_process(ptr: u32, len: u32) -> u64 {
            #[allow(unused_mut, unused_assignments)]
            let mut config: ::core::option::Option<$crate::ConfigFn> = ::core::option::Option::None;
            $( config = ::core::option::Option::Some($config); )?
            $crate::abi::process(ptr, len, &$handler, config)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// message builds a batch message: job, plugin and digest, configuration pairs, and records
    /// of (key, value, timestamp, headers).
    #[allow(clippy::type_complexity)]
    fn message(config: &[(&str, &str)], recs: &[(&[u8], &[u8], i64, &[(&[u8], &[u8])])]) -> Vec<u8> {
        fn str(b: &mut Vec<u8>, s: &[u8]) {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s);
        }
        let mut b = b"DFB\x01".to_vec();
        b.extend_from_slice(&[0; 4]); // header_len, below
        b.extend_from_slice(&(recs.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&100u64.to_le_bytes());
        str(&mut b, b"job");
        str(&mut b, b"plug");
        str(&mut b, b"sha256:00");
        b.extend_from_slice(&(config.len() as u32).to_le_bytes());
        for (k, v) in config {
            str(&mut b, k.as_bytes());
            str(&mut b, v.as_bytes());
        }
        let header_len = b.len() as u32;
        b[4..8].copy_from_slice(&header_len.to_le_bytes());
        for (k, v, ts, hs) in recs {
            b.extend_from_slice(&(k.len() as u32).to_le_bytes());
            b.extend_from_slice(&(v.len() as u32).to_le_bytes());
            b.extend_from_slice(&(hs.len() as u32).to_le_bytes());
            b.extend_from_slice(&ts.to_le_bytes());
            b.extend_from_slice(k);
            b.extend_from_slice(v);
            for (hk, hv) in hs.iter() {
                str(&mut b, hk);
                str(&mut b, hv);
            }
        }
        b
    }

    #[test]
    fn info_json_escapes() {
        let info = Info {
            description: "a \"quoted\" \\ line\nand\ttab \u{1}",
            kind: Type::Filter,
            ..Info::new("n", "1")
        };
        assert_eq!(
            info.to_json(),
            r#"{"name":"n","version":"1","type":"filter","description":"a \"quoted\" \\ line\nand\ttab \u0001","author":"","api_version":"1.0"}"#
        );
    }

    #[test]
    fn cut_at_a_char_boundary() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abc", 2), "ab");
        assert_eq!(cut("aé", 2), "a"); // é is 2 bytes
        assert_eq!(cut("", 0), "");
    }

    #[test]
    fn batch_fields_config_records() {
        let hs: &[(&[u8], &[u8])] = &[(b"h", b"1"), (b"h", b"")];
        let msg = message(
            &[("a", "1"), ("bin", "\u{ff}")],
            &[(b"k", b"v", 42, hs), (b"", b"", 0, &[])],
        );
        let b = Batch::parse(&msg).expect("parse");
        assert_eq!((b.job, b.plugin, b.digest), (&b"job"[..], &b"plug"[..], &b"sha256:00"[..]));
        assert_eq!((b.seq, b.base, b.len()), (7, 100, 2));
        assert_eq!(b.config.get("a"), Some("1"));
        assert_eq!(b.config.get("missing"), None);
        assert_eq!(b.config.get_bytes("bin"), Some("\u{ff}".as_bytes()));
        assert_eq!(b.config.len(), 2);
        let recs: Vec<Record> = b.records().collect();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].key, recs[0].value, recs[0].timestamp), (&b"k"[..], &b"v"[..], 42));
        let got: Vec<_> = recs[0].headers().collect();
        assert_eq!(got, vec![(&b"h"[..], &b"1"[..]), (&b"h"[..], &b""[..])]);
        assert_eq!(recs[1].headers().count(), 0);
        assert!(b.check());
    }

    #[test]
    fn malformed_is_caught() {
        let msg = message(&[], &[(b"k", b"value", 0, &[])]);
        for cut in [0, 3, 31, 40, msg.len() - 1] {
            let short = &msg[..cut];
            match Batch::parse(short) {
                None => {}
                Some(b) => assert!(!b.check(), "{} bytes: check passed", cut),
            }
        }
        let mut long = msg.clone();
        long.push(0);
        assert!(!Batch::parse(&long).expect("parse").check(), "a trailing byte passed");
        let mut flags = msg;
        flags[12] = 1;
        assert!(Batch::parse(&flags).is_none(), "unknown flags passed");
    }

    #[test]
    fn results_and_writer() {
        let mut out = Out { buf: Vec::new(), pos: 0 };
        let mut r = Results { out: &mut out, n: 0 };
        r.write(|w| {
            w.extend_from_slice(b"abcd");
            w.append(3).copy_from_slice(b"xyz");
            w.truncate(5);
            w.push(b'!');
            assert_eq!(w.as_slice(), b"abcdx!");
            w.resize(8, b'.');
            Ok(())
        });
        r.write(|w| {
            w.extend_from_slice(b"gone");
            Err(Error::invalid_input("no"))
        });
        r.unchanged();
        r.dropped();
        r.write(|w| {
            w.resize(MAX_VALUE_SIZE + 1, 0);
            Ok(())
        });
        assert_eq!(r.len(), 5);
        let mut want = vec![0, 0, 0, 0, 8, 0, 0, 0];
        want.extend_from_slice(b"abcdx!..");
        want.extend_from_slice(&[2, 1, 0, 0, 2, 0, 0, 0]);
        want.extend_from_slice(b"no");
        want.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 5, 0, 0]);
        let got = &out.buf[..out.pos];
        assert_eq!(&got[..want.len()], &want[..]);
        assert!(std::str::from_utf8(&got[want.len() + 4..])
            .unwrap()
            .contains("is over the 8388608-byte limit"));
    }

    #[test]
    fn capability_errors() {
        let kv = Some(("users", "a..b"));
        let e = cap_error(KV_NOT_FOUND, kv);
        assert_eq!(e.code(), Code::InvalidInput);
        assert_eq!(e.message(), r#"dataflare_pdk: bucket "users", key "a..b": not found"#);
        let e = cap_error(CAP_DENIED, kv);
        assert_eq!(e.code(), Code::InvalidInput);
        assert_eq!(
            e.message(),
            r#"dataflare_pdk: bucket "users", key "a..b": not granted to this module (push it with --grant kv:users)"#
        );
        let e = cap_error(CAP_BAD_ARGS, kv);
        assert_eq!(e.code(), Code::InvalidInput);
        assert!(e.message().contains("a key NATS does not allow"), "{}", e.message());
        let e = cap_error(-4, kv);
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().ends_with(": unavailable now (the worker's log says why)"));
        let e = cap_error(CAP_DENIED, None);
        assert_eq!(
            e.message(),
            "dataflare_pdk: log: not granted to this module (push it with --grant log)"
        );
        assert_eq!(cap_error(CAP_BAD_ARGS, None).code(), Code::InvalidInput);
    }

    #[test]
    fn capabilities_without_a_host() {
        // Outside WebAssembly there is no host: every call is unavailable, and out is kept.
        let mut out = b"kept".to_vec();
        let e = kv_get_into(&mut out, "users", "k").unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert_eq!(out, b"kept");
        assert_eq!(kv_get("users", "k").unwrap_err().code(), Code::Unavailable);
        assert_eq!(log(Level::Warn, "hello").unwrap_err().code(), Code::Unavailable);
    }

    #[test]
    fn errors_are_cut() {
        let mut out = Out { buf: Vec::new(), pos: 0 };
        Results { out: &mut out, n: 0 }.error(&Error::processing("é".repeat(MAX_ERROR_SIZE)));
        let n = u32::from_le_bytes([out.buf[4], out.buf[5], out.buf[6], out.buf[7]]) as usize;
        assert_eq!(n, MAX_ERROR_SIZE);
        assert_eq!(out.pos, 8 + MAX_ERROR_SIZE);
    }
}
