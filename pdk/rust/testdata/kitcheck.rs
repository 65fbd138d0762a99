//! kitcheck exercises every shape of the Rust kit, chosen per job by the configuration key
//! `shape`; the tests in examples/plugins (rustkit_test.go) run it through the real runtime.
//!
//!   shape=records    value "drop": dropped; "same": given back (unchanged); "error": an error
//!                    of code 1; "panic": a panic; else "key|value|timestamp|h=v,…|configs"
//!   shape=transform  the value reversed; "error": an error; "big": a value over the limit
//!   shape=batch      "job|plugin|digest|seq|base|len" for every record
//!   shape=fail       a batch-level error of code 2
//!   shape=short      one result too few
//!   shape=long       one result too many
//! A configuration with the key `bad` is refused; configs counts the calls of the config
//! function.

use dataflare_pdk::{
    plugin, records, transform, Batch, Code, Config, Error, Handler, Info, Output, Record,
    Results, Writer, MAX_VALUE_SIZE,
};
use std::cell::Cell;

const INFO: Info = Info {
    description: "checks the Rust kit",
    author: "DataFlare \"tests\"",
    ..Info::new("kitcheck", "0.1.0")
};

thread_local! {
    static CONFIGS: Cell<u32> = Cell::new(0);
}

fn config(cfg: &Config) -> Result<(), Error> {
    CONFIGS.with(|c| c.set(c.get() + 1));
    if cfg.get_bytes("bad").is_some() {
        return Err(Error::invalid_input("kitcheck: bad configuration"));
    }
    Ok(())
}

fn record<'a>(_cfg: &Config<'a>, r: Record<'a>) -> Result<Output<'a>, Error> {
    match r.value {
        b"drop" => Ok(Output::Dropped),
        b"same" => Ok(Output::Bytes(r.value)),
        b"error" => Err(Error::invalid_input("kitcheck: error asked for")),
        b"panic" => panic!("kitcheck: panic asked for"),
        _ => {
            let mut v = Vec::new();
            v.extend_from_slice(r.key);
            v.push(b'|');
            v.extend_from_slice(r.value);
            v.extend_from_slice(format!("|{}|", r.timestamp).as_bytes());
            for (i, (k, h)) in r.headers().enumerate() {
                if i > 0 {
                    v.push(b',');
                }
                v.extend_from_slice(k);
                v.push(b'=');
                v.extend_from_slice(h);
            }
            v.extend_from_slice(format!("|{}", CONFIGS.with(|c| c.get())).as_bytes());
            Ok(Output::Value(v))
        }
    }
}

fn reverse(_cfg: &Config, value: &[u8], out: &mut Writer) -> Result<(), Error> {
    match value {
        b"error" => return Err(Error::new(Code::Processing, "kitcheck: error asked for")),
        b"big" => {
            out.resize(MAX_VALUE_SIZE + 1, b'x');
            return Ok(());
        }
        _ => {}
    }
    out.extend(value.iter().rev());
    Ok(())
}

fn whole(batch: &Batch, results: &mut Results) -> Result<(), Error> {
    let line = format!(
        "{}|{}|{}|{}|{}|{}",
        String::from_utf8_lossy(batch.job),
        String::from_utf8_lossy(batch.plugin),
        String::from_utf8_lossy(batch.digest),
        batch.seq,
        batch.base,
        batch.len()
    );
    for _ in batch.records() {
        results.value(line.as_bytes());
    }
    Ok(())
}

fn check(batch: &Batch, results: &mut Results) -> Result<(), Error> {
    match batch.config.get("shape") {
        Some("records") => records(record).process(batch, results),
        Some("transform") => transform(reverse).process(batch, results),
        Some("batch") => whole(batch, results),
        Some("fail") => Err(Error::processing("kitcheck: the batch fails")),
        Some("short") => {
            for _ in batch.records().skip(1) {
                results.unchanged();
            }
            Ok(())
        }
        Some("long") => {
            for _ in batch.records() {
                results.dropped();
            }
            results.dropped();
            Ok(())
        }
        other => Err(Error::invalid_input(format!("kitcheck: unknown shape {:?}", other))),
    }
}

plugin! { info: INFO, handler: check, config: config }
