// bench/validate_ajv.js: validations per second of ajv 8 (with ajv-formats,
// mode "full") on the schema and instances that bench/validate gives
// evc_validate and Rust's jsonschema crate.
//
//   node bench/validate_ajv.js DATA.tsv SCHEMA.json SECONDS
//
// It prints one line per mode and kind, "parsed_v RATE PASSED", and measures
// as bench/validate-rs does: one untimed pass to warm up (and let the JIT
// compile), then whole passes over the instances until SECONDS have gone by.
//   parsed : the instances are JS objects already: validate(obj)
//   text   : each is parsed from its text in the loop: validate(JSON.parse(t))
// ajv stops at the first error (allErrors is off), as the others do.
'use strict';
const fs = require('fs');
const Ajv = require('ajv');
const addFormats = require('ajv-formats');

const [data, schemaFile, secs] = process.argv.slice(2);
const ajv = new Ajv();
addFormats(ajv);
const validate = ajv.compile(JSON.parse(fs.readFileSync(schemaFile, 'utf8')));
const lines = fs.readFileSync(data, 'utf8').split('\n').filter(Boolean).map(l => l.split('\t'));

function rate(kind, parse) {
  const texts = lines.filter(l => l[0] === kind).map(l => l[1]);
  const objs = texts.map(t => JSON.parse(t));
  const pass = () => {
    let p = 0;
    for (let i = 0; i < texts.length; i++)
      if (validate(parse ? JSON.parse(texts[i]) : objs[i])) p++;
    return p;
  };
  let passed = pass();
  let n = 0;
  const t0 = process.hrtime.bigint();
  const limit = BigInt(Math.round(secs * 1e9));
  do { passed = pass(); n += texts.length; } while (process.hrtime.bigint() - t0 < limit);
  return Math.round(n / (Number(process.hrtime.bigint() - t0) / 1e9)) + ' ' + passed;
}

console.log(`ajv ${require('ajv/package.json').version}, ajv-formats ${require('ajv-formats/package.json').version}`);
for (const kind of ['v', 'i'])
  for (const parse of [false, true])
    console.log(`${parse ? 'text' : 'parsed'}_${kind} ${rate(kind, parse)}`);
