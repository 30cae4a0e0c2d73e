// bench/validate_gen.js: the event schema and the instances that
// bench/validate feeds to both evc_validate and ajv.  Deterministic.
'use strict';

const schema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'checkout.completed',
  type: 'object',
  required: ['event_id', 'occurred_at', 'user', 'order_id', 'status', 'currency', 'amount_cents'],
  additionalProperties: false,
  properties: {
    event_id: { type: 'string', format: 'uuid' },
    occurred_at: { type: 'string', format: 'date-time' },
    user: {
      type: 'object',
      required: ['id', 'email'],
      additionalProperties: false,
      properties: {
        id: { type: 'integer', minimum: 1 },
        email: { type: 'string', format: 'email', maxLength: 254 },
        country: { type: 'string', pattern: '^[A-Z]{2}$' },
        plan: { enum: ['free', 'pro', 'team', 'enterprise'] }
      }
    },
    order_id: { type: 'string', pattern: '^ord_[0-9a-f]{12}$' },
    status: { enum: ['paid', 'pending', 'failed', 'refunded'] },
    currency: { type: 'string', enum: ['EUR', 'USD', 'GBP', 'JPY'] },
    amount_cents: { type: 'integer', minimum: 0, maximum: 100000000 },
    items: {
      type: 'array', minItems: 1, maxItems: 50,
      items: {
        type: 'object', required: ['sku', 'qty'],
        properties: {
          sku: { type: 'string', minLength: 3, maxLength: 32 },
          qty: { type: 'integer', minimum: 1 },
          price_cents: { type: 'integer', minimum: 0 }
        }
      }
    },
    coupon: { type: ['string', 'null'], maxLength: 40 },
    channel: { enum: ['web', 'ios', 'android', 'api'] },
    session_ms: { type: 'number', minimum: 0 },
    ip: { type: 'string', format: 'ipv4' },
    user_agent: { type: 'string', maxLength: 512 },
    tags: { type: 'array', items: { type: 'string' }, uniqueItems: true, maxItems: 10 }
  }
};

let seed = 42;
function rnd(n) { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return (seed >>> 8) % n; }
function hex(n) { let s = ''; for (let i = 0; i < n; i++) s += '0123456789abcdef'[rnd(16)]; return s; }
function pick(a) { return a[rnd(a.length)]; }

function valid() {
  const items = [];
  for (let i = 0, n = 1 + rnd(4); i < n; i++)
    items.push({ sku: 'SKU-' + hex(6), qty: 1 + rnd(5), price_cents: rnd(10000) });
  return {
    event_id: `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`,
    occurred_at: `2024-0${1 + rnd(9)}-1${rnd(10)}T1${rnd(10)}:${10 + rnd(50)}:${10 + rnd(50)}.${rnd(1000)}Z`,
    user: { id: 1 + rnd(1000000), email: `user${rnd(100000)}@example.com`, country: pick(['FR', 'DE', 'US', 'JP']), plan: pick(['free', 'pro', 'team']) },
    order_id: 'ord_' + hex(12),
    status: pick(['paid', 'pending', 'failed']),
    currency: pick(['EUR', 'USD', 'GBP']),
    amount_cents: rnd(1000000),
    items,
    coupon: rnd(2) ? null : 'WELCOME' + rnd(100),
    channel: pick(['web', 'ios', 'android']),
    session_ms: rnd(100000) / 10,
    ip: `${rnd(256)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`,
    user_agent: 'Mozilla/5.0 (X11; Linux x86_64) bench/' + rnd(100),
    tags: ['a' + rnd(10), 'b' + rnd(10)]
  };
}

// Invalid events: one realistic mistake each, at varying depths.
const breakers = [
  e => { e.user.email = 'not-an-email'; },
  e => { e.status = 'shipped'; },
  e => { delete e.currency; },
  e => { e.order_id = 'order-' + hex(6); },
  e => { e.items[0].qty = 0; },
  e => { e.amount_cents = -5; },
  e => { e.extra = true; },
  e => { e.occurred_at = '2024-13-01T00:00:00Z'; }
];

function instances(n) {
  const out = { valid: [], invalid: [] };
  for (let i = 0; i < n; i++) {
    out.valid.push(valid());
    const e = valid();
    breakers[i % breakers.length](e);
    out.invalid.push(e);
  }
  return out;
}

module.exports = { schema, instances };

if (require.main === module) {
  // node validate_gen.js N: print schema then "v<TAB>json" / "i<TAB>json" lines
  const n = parseInt(process.argv[2] || '1000', 10);
  const d = instances(n);
  process.stdout.write(JSON.stringify(schema) + '\n');
  for (const e of d.valid) process.stdout.write('v\t' + JSON.stringify(e) + '\n');
  for (const e of d.invalid) process.stdout.write('i\t' + JSON.stringify(e) + '\n');
}
