//! bench/validate-rs: validations per second of Rust's `jsonschema` crate
//! (draft 7, formats asserted) on the schema and instances that bench/validate
//! gives evc_validate and ajv.
//!
//!   evc-validate-rs DATA.tsv SCHEMA.json SECONDS
//!
//! DATA.tsv holds "v<TAB>json" and "i<TAB>json" lines (bench/validate_gen.js).
//! It prints one line per mode and kind, "parsed_v RATE PASSED", as the ajv
//! runner does, and measures the same way: one untimed pass to warm up, then
//! whole passes over the instances until SECONDS have gone by.
//!   parsed : the instances are serde_json values already: is_valid(&value)
//!   text   : each is parsed from its text in the loop: from_str, then is_valid
//! is_valid stops at the first error, as evc_validate and ajv do.

use std::{env, fs, hint::black_box, process, time::Instant};

use jsonschema::Validator;
use serde_json::Value;

fn pass_parsed(validator: &Validator, docs: &[Value]) -> u64 {
    docs.iter().filter(|doc| validator.is_valid(doc)).count() as u64
}

fn pass_text(validator: &Validator, texts: &[&str]) -> u64 {
    let mut passed = 0;
    for text in texts {
        let doc: Value = serde_json::from_str(text).expect("instance is not JSON");
        if validator.is_valid(&doc) {
            passed += 1;
        }
    }
    passed
}

/// Whole passes for at least `secs` seconds: (validations per second, passed).
fn rate(secs: f64, count: usize, mut pass: impl FnMut() -> u64) -> (f64, u64) {
    black_box(pass()); // warm-up, untimed
    let mut passed;
    let mut n: u64 = 0;
    let t0 = Instant::now();
    loop {
        passed = black_box(pass());
        n += count as u64;
        if t0.elapsed().as_secs_f64() >= secs {
            break;
        }
    }
    (n as f64 / t0.elapsed().as_secs_f64(), passed)
}

fn main() {
    let args: Vec<String> = env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: {} DATA.tsv SCHEMA.json SECONDS", args[0]);
        process::exit(2);
    }
    let data = fs::read_to_string(&args[1]).expect("could not read the instances");
    let schema: Value = serde_json::from_str(&fs::read_to_string(&args[2]).expect("could not read the schema"))
        .expect("schema is not JSON");
    let secs: f64 = args[3].parse().expect("SECONDS is not a number");
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema does not compile");

    for kind in ["v", "i"] {
        let texts: Vec<&str> = data
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .filter(|(k, _)| *k == kind)
            .map(|(_, text)| text)
            .collect();
        let docs: Vec<Value> = texts
            .iter()
            .map(|text| serde_json::from_str(text).expect("instance is not JSON"))
            .collect();
        let (r, p) = rate(secs, docs.len(), || pass_parsed(&validator, black_box(&docs)));
        println!("parsed_{kind} {} {p}", r.round() as u64);
        let (r, p) = rate(secs, texts.len(), || pass_text(&validator, black_box(&texts)));
        println!("text_{kind} {} {p}", r.round() as u64);
    }
}
