// Runs a k6 script under node with stand-in k6 modules, against a simulated sumflow built from the
// real proto (gRPC methods and fields) and the real OpenAPI document (paths, parameters, response
// shapes). Usage: node --import ./register.mjs runner.mjs CONFIG.json  (writes config.report).
//
// The simulated system follows the documented contract: AddNumbers validates the UUID (any case,
// canonical lower-case answer), returns duplicate=true for a repeat, INVALID_ARGUMENT for a bad id;
// every accepted new id is "applied", so GET /api/total grows as the real accumulator's would.
// `faults` break one rule on purpose so the tests can show the script's checks catch it.
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import { markInitDone } from './modules/grpc.mjs';
import { state } from './modules/state.mjs';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const faults = new Set(config.faults || []);
state.config = config;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function grpcStatus(code, message) {
  return { status: code, message: null, error: { code, message, details: [] }, headers: {}, trailers: {} };
}

function canonicalUuid(raw) {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 36 || raw.trim() !== raw) {
    return null;
  }
  if (raw.includes('{') || raw.includes(':')) {
    return null;
  }
  const hex = raw.replace(/-/g, '').toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) {
    return null;
  }
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// protojson.Unmarshal as k6 calls it: proto or JSON field names, int64 as number or string.
function decodeRequest(fields, request) {
  const byKey = new Map();
  for (const f of fields) {
    byKey.set(f.name, f);
    byKey.set(f.json_name, f);
  }
  const out = {};
  for (const [key, value] of Object.entries(request)) {
    const field = byKey.get(key);
    if (field === undefined) {
      throw new Error(`unable to serialise request object to protocol buffer: unknown field "${key}"`);
    }
    if (field.type === 'int64') {
      const text = typeof value === 'number' && Number.isInteger(value) ? String(value) : value;
      if (typeof text !== 'string' || !/^-?\d+$/.test(text)) {
        throw new Error(`unable to serialise request object: field ${key}: invalid int64 ${value}`);
      }
      const big = BigInt(text);
      if (big < INT64_MIN || big > INT64_MAX) {
        throw new Error(`unable to serialise request object: field ${key}: int64 out of range`);
      }
      out[field.name] = big;
    } else if (field.type === 'string') {
      if (typeof value !== 'string') {
        throw new Error(`unable to serialise request object: field ${key}: expected a string`);
      }
      out[field.name] = value;
    } else if (field.type === 'bool') {
      if (typeof value !== 'boolean') {
        throw new Error(`unable to serialise request object: field ${key}: expected a bool`);
      }
      out[field.name] = value;
    } else {
      throw new Error(`field ${key}: type ${field.type} not simulated`);
    }
  }
  for (const f of fields) {
    if (!(f.name in out)) {
      out[f.name] = { int64: 0n, string: '', bool: false }[f.type];
    }
  }
  return out;
}

// protojson.Marshal with EmitUnpopulated, as k6 shapes response.message.
function encodeResponse(fields, values) {
  const out = {};
  for (const f of fields) {
    const v = f.name in values ? values[f.name] : { int64: 0n, string: '', bool: false }[f.type];
    out[f.json_name] = f.type === 'int64' ? String(v) : v;
  }
  return out;
}

const system = {
  stored: new Map(), // canonical id -> {first, second, result}
  total: 0n,
  applied: 0,

  grpcInvoke(method, request) {
    const model = config.grpc.methods[method];
    if (model === undefined) {
      throw new Error(`method "${method}" not found in file descriptors`);
    }
    const req = decodeRequest(model.input, request);
    if (method !== 'sumflow.v1.SumService/AddNumbers') {
      return grpcStatus(12, `${method} not simulated`);
    }
    const id = canonicalUuid(req.request_id);
    if (id === null && !faults.has('accept_invalid')) {
      return grpcStatus(3, 'request_id must be a UUID');
    }
    const key = id === null ? req.request_id : id;
    const result = req.first_number + req.second_number;
    if (result < INT64_MIN || result > INT64_MAX) {
      return grpcStatus(11, 'sum does not fit in int64');
    }
    const prior = this.stored.get(key);
    if (prior !== undefined) {
      if (prior.first !== req.first_number || prior.second !== req.second_number) {
        return grpcStatus(6, 'request_id already used with other numbers');
      }
      const duplicate = !faults.has('flip_duplicate');
      return { status: 0, message: encodeResponse(model.output, { request_id: key, result: prior.result, duplicate }), error: null, headers: {}, trailers: {} };
    }
    this.stored.set(key, { first: req.first_number, second: req.second_number, result });
    if (!(faults.has('lose_event') && this.stored.size === 1)) {
      this.total += result;
      this.applied += 1;
    }
    return { status: 0, message: encodeResponse(model.output, { request_id: key, result, duplicate: false }), error: null, headers: {}, trailers: {} };
  },

  httpRequest(method, url) {
    const base = new URL(config.rest.base);
    let parsed;
    try {
      parsed = new URL(url);
    } catch (_err) {
      throw new Error(`invalid URL ${url}`);
    }
    if (parsed.origin !== base.origin) {
      return { status: 0, body: '', headers: {} };
    }
    const route = config.rest.routes.find((r) => r.path === parsed.pathname);
    if (route === undefined) {
      return respond(config.rest.not_found);
    }
    const op = route.methods[method.toLowerCase()];
    if (op === undefined) {
      return respond(config.rest.method_not_allowed);
    }
    for (const [name, value] of parsed.searchParams) {
      const param = op.params.find((p) => p.in === 'query' && p.name === name);
      if (param === undefined) {
        return { status: 0, body: '', headers: {}, undeclared: name };
      }
      if (!valueFits(param.schema, value)) {
        return respond(op.responses['400']);
      }
    }
    const ok = op.responses['200'];
    if (ok === undefined) {
      throw new Error(`${route.path}: no 200 response in the OpenAPI document`);
    }
    let body = ok.body;
    if (route.path === '/api/total' && body !== null && typeof body === 'object') {
      body = { ...body };
      if ('total' in body) body.total = Number(this.total);
      if ('applied' in body) body.applied = this.applied;
    }
    if (route.path === '/api/final') {
      body = String(this.total);
    }
    return respond({ ...ok, body });
  },
};

function valueFits(schema, raw) {
  if (schema.type === 'integer') {
    if (!/^-?\d+$/.test(raw)) return false;
    const v = Number(raw);
    if (schema.minimum !== undefined && v < schema.minimum) return false;
    if (schema.maximum !== undefined && v > schema.maximum) return false;
    return true;
  }
  return true;
}

function respond(spec) {
  if (spec === undefined) {
    throw new Error('the OpenAPI document lacks a response the simulation needs');
  }
  const body = typeof spec.body === 'string' ? spec.body : JSON.stringify(spec.body);
  return { status: Number(spec.status), body, headers: { 'Content-Type': spec.content_type } };
}

state.system = system;

// Summary data in k6's shape.
function summarize() {
  const metrics = {};
  for (const [name, m] of state.metrics) {
    const vals = m.samples.map((s) => s.value);
    let values;
    if (m.type === 'counter') {
      const count = vals.reduce((a, b) => a + b, 0);
      values = { count, rate: count };
    } else if (m.type === 'gauge') {
      values = vals.length ? { value: vals[vals.length - 1], min: Math.min(...vals), max: Math.max(...vals) } : { value: 0, min: 0, max: 0 };
    } else if (m.type === 'rate') {
      const passes = vals.filter((v) => v !== 0).length;
      values = { rate: vals.length ? passes / vals.length : 0, passes, fails: vals.length - passes };
    } else {
      const sorted = [...vals].sort((a, b) => a - b);
      const q = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0);
      values = {
        avg: sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : 0,
        min: sorted[0] || 0,
        med: q(0.5),
        max: sorted[sorted.length - 1] || 0,
        'p(90)': q(0.9),
        'p(95)': q(0.95),
        'p(99)': q(0.99),
      };
    }
    if (vals.length === 0 && m.type === 'gauge') {
      continue; // k6 omits metrics without samples
    }
    metrics[name] = { type: m.type, contains: m.contains, values };
  }
  return metrics;
}

const report = { errors: [], iterations: {} };
globalThis.__ENV = { ...config.env };
globalThis.__VU = 0;
globalThis.__ITER = 0;
globalThis.open = () => {
  throw new Error('open() is not simulated');
};

const consoleLines = [];
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  console[level] = (...args) => consoleLines.push(`${level}: ${args.join(' ')}`);
}

const mod = await import(pathToFileURL(config.script).href);
markInitDone();
report.options = JSON.parse(JSON.stringify(mod.options || {}));
report.exports = Object.keys(mod);

const setupData = typeof mod.setup === 'function' ? JSON.parse(JSON.stringify(mod.setup() ?? null)) : null;
globalThis.__VU = 1;
for (const [name, scenario] of Object.entries(report.options.scenarios || {})) {
  const fnName = scenario.exec || 'default';
  const fn = mod[fnName];
  if (typeof fn !== 'function') {
    report.errors.push(`scenario ${name}: exec ${fnName} is not an exported function`);
    continue;
  }
  report.iterations[name] = 0;
  for (let i = 0; i < config.iterations; i++) {
    globalThis.__ITER = i;
    try {
      fn(setupData);
      report.iterations[name] += 1;
    } catch (err) {
      report.errors.push(`scenario ${name} iteration ${i}: ${err && err.stack ? err.stack : err}`);
      if (report.errors.length > 20) break;
    }
  }
}
globalThis.__VU = 0;
if (typeof mod.teardown === 'function') {
  mod.teardown(setupData);
}
report.metrics = summarize();
report.checks = Object.fromEntries(state.checks);
if (typeof mod.handleSummary === 'function') {
  const out = mod.handleSummary({ metrics: report.metrics, setup_data: setupData, options: report.options, state: {} });
  report.summary = out;
}
report.grpc = { loads: state.grpcLoads, connects: state.grpcConnects, calls: state.grpcCalls };
report.http = state.httpCalls;
report.sleeps = { count: state.sleeps.length, min: Math.min(...state.sleeps), max: Math.max(...state.sleeps) };
report.console = consoleLines;
report.system = { applied: system.applied, total: String(system.total) };
writeFileSync(config.report, JSON.stringify(report, (k, v) => (typeof v === 'bigint' ? String(v) : v), 2));
