//! kv-lookup in Rust: replaces each record's value, a key, with that key's value in a NATS KV
//! bucket, read through the worker's cache (capability `kv:BUCKET`). The Rust twin of
//! `examples/plugins/kv-lookup-wasm`, result for result. Build with build.sh.
//!
//! Configuration (`dataflare submit --config k=v`):
//!
//!   bucket   the KV bucket (required); the module must be pushed with `--grant kv:BUCKET`
//!            for it
//!
//! A key without a value, or one NATS does not allow, fails its record; a bucket not granted
//! fails every record, saying so; a bucket that cannot be read now (NATS unreachable, or no
//! such bucket) fails the batch as unavailable, so that the worker runs it again later.
//!
//! ```sh
//! sh build.sh
//! dataflare plugin push kv-lookup kv-lookup.wasm --grant kv:users
//! ```
//!
//! A whole-batch function, so that an unavailable bucket can fail the batch. Each value is read
//! into one buffer, cleared and reused from record to record (no allocation once it holds the
//! largest value), and copied once, into the output.

use dataflare_pdk::{kv_get_into, plugin, Batch, Code, Config, Error, Info, Results, Type};
use std::cell::RefCell;

const INFO: Info = Info {
    kind: Type::Enricher,
    description: "replaces each key with its value in a NATS KV bucket (config bucket=NAME)",
    author: "DataFlare",
    ..Info::new("kv-lookup-rust", "1.0.0")
};

thread_local! {
    // The values' buffer, kept from batch to batch (an instance runs one batch at a time).
    static VALUE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Bucket returns the configured bucket, or the batch's error when there is none.
fn bucket<'a>(cfg: &Config<'a>) -> Result<&'a str, Error> {
    match cfg.get("bucket") {
        Some(b) if !b.is_empty() => Ok(b),
        _ => Err(Error::invalid_input(
            "kv-lookup: config bucket is required (e.g. bucket=users)",
        )),
    }
}

fn check(cfg: &Config) -> Result<(), Error> {
    bucket(cfg).map(|_| ())
}

fn lookup(batch: &Batch, results: &mut Results) -> Result<(), Error> {
    let bucket = bucket(&batch.config)?;
    VALUE.with(|value| {
        let value = &mut *value.borrow_mut();
        for rec in batch.records() {
            let key = match std::str::from_utf8(rec.value) {
                Ok(key) => key,
                Err(_) => {
                    // Not UTF-8, so not a key NATS allows: what the host says of one.
                    results.error(&Error::invalid_input(format!(
                        "kv-lookup: bucket {:?}, key {:?}: refused (a key NATS does not allow: \
                         letters, digits and -/_=., no leading, trailing or double dot)",
                        bucket,
                        String::from_utf8_lossy(rec.value)
                    )));
                    continue;
                }
            };
            value.clear();
            match kv_get_into(value, bucket, key) {
                Ok(()) => results.value(value),
                Err(e) if e.code() == Code::Unavailable => return Err(e),
                Err(e) => results.error(&e),
            }
        }
        Ok(())
    })
}

plugin! { info: INFO, handler: lookup, config: check }
