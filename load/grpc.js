// k6 gRPC load for the sumflow adder: sumflow.v1.SumService/AddNumbers.
//
//   k6 run load/grpc.js                                  # Vagrant defaults, both scenarios
//   SUMFLOW_GRPC_TARGET=127.0.0.1:50051 SUMFLOW_REST_URL=http://127.0.0.1:8080 \
//     SCENARIOS=open RATE=200 PEAK_RATE=500 k6 run load/grpc.js
//   SUMFLOW_TLS_CA=ca.pem [SUMFLOW_TLS_CERT=client.pem SUMFLOW_TLS_KEY=client.key] k6 run load/grpc.js
//
// Mix per iteration: fresh UUIDs (must come back duplicate=false with result = a + b), a share of
// deliberate repeats of ids this VU already got answered (REPEAT_RATIO, must come back duplicate=true
// with the stored result), and a share of malformed ids (INVALID_RATIO, must come back INVALID_ARGUMENT).
// Every response is checked. At the end, teardown waits until the accumulator's GET /api/total stops
// moving and compares the count of accepted distinct requests (summed over all VUs, read from k6's
// own REST API) with the growth of `applied` (valid when this run is the only writer); a mismatch
// fails the run (exit code 110). See docs/load.md.
import grpc from 'k6/net/grpc';
import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter, Gauge } from 'k6/metrics';

import {
  GRPC_TARGET,
  REST_URL,
  envNumber,
  envString,
  parseJson,
  pick,
  randomInt,
  selectedScenarios,
  loadScenarios,
  textSummary,
  uuidv4,
} from './lib/common.js';

export const METHOD = 'sumflow.v1.SumService/AddNumbers';

const REPEAT_RATIO = envNumber('REPEAT_RATIO', 0.1);
const INVALID_RATIO = envNumber('INVALID_RATIO', 0.02);
const CALL_TIMEOUT = `${envNumber('CALL_TIMEOUT_S', 10)}s`;
const SETTLE_SECONDS = envNumber('SETTLE_SECONDS', 60);
// k6's REST API (`k6 run --address`, default localhost:6565): teardown reads the counters summed over
// every VU from it, since a VU only sees its own.
const K6_API = envString('K6_API', 'localhost:6565');
const MAX_OPERAND = envNumber('MAX_OPERAND', 1000000);

// Malformed ids the adder must refuse with INVALID_ARGUMENT.
const INVALID_IDS = [
  '',
  'not-a-uuid',
  '1234',
  'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz',
  '{0f8fad5b-d9cb-469f-a165-70867728950e}',
  'urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e',
  ' 0f8fad5b-d9cb-469f-a165-70867728950e',
];

const ALL_SCENARIOS = loadScenarios('addNumbers', { vus: 50, peakVus: 200, rate: 500, peakRate: 1500, preVus: 50, maxVus: 400 });

export const options = {
  scenarios: selectedScenarios(ALL_SCENARIOS),
  thresholds: {
    grpc_req_duration: [`p(95)<${envNumber('GRPC_P95_MS', 250)}`, `p(99)<${envNumber('GRPC_P99_MS', 500)}`],
    'grpc_req_duration{kind:fresh}': [`p(99)<${envNumber('GRPC_P99_MS', 500)}`],
    checks: [`rate>${envNumber('CHECKS_MIN_RATE', 0.99)}`],
    sumflow_unexpected_status: ['count<1'],
    sumflow_connect_failed: ['count<1'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  // Teardown may wait SETTLE_SECONDS for the accumulator, then reads k6's counters.
  teardownTimeout: `${SETTLE_SECONDS + 30}s`,
};

// Outcome counters, summed over all VUs in the end-of-test summary.
const acceptedNew = new Counter('sumflow_accepted_new'); // OK, duplicate=false: one event each
const acceptedSumPos = new Counter('sumflow_accepted_sum_pos'); // sum of positive results of those
const acceptedSumNeg = new Counter('sumflow_accepted_sum_neg'); // minus the sum of negative results
const uncertain = new Counter('sumflow_uncertain'); // UNAVAILABLE/DEADLINE_EXCEEDED: maybe applied
const unexpectedStatus = new Counter('sumflow_unexpected_status'); // any other failure of a valid call
const connectFailed = new Counter('sumflow_connect_failed'); // no channel (unreachable, TLS refused)
const appliedDelta = new Gauge('sumflow_applied_delta'); // growth of /api/total applied (teardown)
const totalDelta = new Gauge('sumflow_total_delta'); // growth of /api/total total (teardown)

const client = new grpc.Client();
client.load(['../proto'], 'sumflow/v1/sum.proto');

// TLS when SUMFLOW_TLS_CA names the PEM CA that signed the adder's certificate; a client certificate
// too (mutual TLS) with SUMFLOW_TLS_CERT and SUMFLOW_TLS_KEY. The same variables as the `sumflow` command.
const TLS_CA = __ENV.SUMFLOW_TLS_CA ? open(__ENV.SUMFLOW_TLS_CA) : null;
const TLS_CERT = __ENV.SUMFLOW_TLS_CERT ? open(__ENV.SUMFLOW_TLS_CERT) : null;
const TLS_KEY = __ENV.SUMFLOW_TLS_KEY ? open(__ENV.SUMFLOW_TLS_KEY) : null;
if ((TLS_CERT === null) !== (TLS_KEY === null)) {
  throw new Error('SUMFLOW_TLS_CERT and SUMFLOW_TLS_KEY go together');
}
if (TLS_CERT !== null && TLS_CA === null) {
  throw new Error('SUMFLOW_TLS_CERT needs SUMFLOW_TLS_CA');
}

function connectParams() {
  if (TLS_CA === null) {
    return { plaintext: true, timeout: CALL_TIMEOUT };
  }
  const tls = { cacerts: [TLS_CA] };
  if (TLS_CERT !== null) {
    tls.cert = TLS_CERT;
    tls.key = TLS_KEY;
  }
  return { plaintext: false, tls, timeout: CALL_TIMEOUT };
}

// Per-VU state (each VU has its own copy of the module).
let connected = false;
const answered = []; // ids this VU got accepted, for deliberate repeats
const ANSWERED_KEEP = 1000;

function ensureConnected() {
  if (!connected) {
    try {
      client.connect(GRPC_TARGET, connectParams());
    } catch (e) {
      connectFailed.add(1); // else a run that never connects has no failed check and passes
      throw e;
    }
    connected = true;
  }
}

function invoke(kind, requestId, first, second) {
  return client.invoke(
    METHOD,
    { request_id: requestId, first_number: first, second_number: second },
    { timeout: CALL_TIMEOUT, tags: { kind } },
  );
}

function recordNotOk(res) {
  if (res.status === grpc.StatusUnavailable || res.status === grpc.StatusDeadlineExceeded) {
    uncertain.add(1);
  } else {
    unexpectedStatus.add(1, { status: String(res.status) });
  }
}

function freshCall() {
  const id = uuidv4();
  const first = randomInt(-MAX_OPERAND, MAX_OPERAND);
  const second = randomInt(-MAX_OPERAND, MAX_OPERAND);
  const res = invoke('fresh', id, first, second);
  const ok = check(
    res,
    {
      'fresh: status OK': (r) => r.status === grpc.StatusOK,
      'fresh: request_id echoed': (r) => r.message !== null && r.message.requestId === id,
      'fresh: result is first + second': (r) => r.message !== null && String(r.message.result) === String(first + second),
      'fresh: duplicate=false': (r) => r.message !== null && r.message.duplicate === false,
    },
    { kind: 'fresh' },
  );
  if (res.status !== grpc.StatusOK) {
    recordNotOk(res);
    return;
  }
  if (ok && res.message.duplicate === false) {
    const result = first + second;
    acceptedNew.add(1);
    if (result >= 0) {
      acceptedSumPos.add(result);
    } else {
      acceptedSumNeg.add(-result);
    }
    if (answered.length >= ANSWERED_KEEP) {
      answered.splice(randomInt(0, answered.length - 1), 1);
    }
    answered.push({ id, first, second });
  }
}

function repeatCall() {
  const prior = pick(answered);
  // Half the repeats send the id in upper case: ids are canonicalised, still a duplicate.
  const sent = Math.random() < 0.5 ? prior.id.toUpperCase() : prior.id;
  const res = invoke('repeat', sent, prior.first, prior.second);
  check(
    res,
    {
      'repeat: status OK': (r) => r.status === grpc.StatusOK,
      'repeat: duplicate=true': (r) => r.message !== null && r.message.duplicate === true,
      'repeat: stored result returned': (r) =>
        r.message !== null && String(r.message.result) === String(prior.first + prior.second),
      'repeat: canonical request_id': (r) => r.message !== null && r.message.requestId === prior.id,
    },
    { kind: 'repeat' },
  );
  if (res.status !== grpc.StatusOK) {
    recordNotOk(res);
  }
}

function invalidCall() {
  const res = invoke('invalid', pick(INVALID_IDS), randomInt(0, 9), randomInt(0, 9));
  check(res, { 'invalid: INVALID_ARGUMENT': (r) => r.status === grpc.StatusInvalidArgument }, { kind: 'invalid' });
}

export function addNumbers() {
  ensureConnected();
  const roll = Math.random();
  if (roll < INVALID_RATIO) {
    invalidCall();
  } else if (roll < INVALID_RATIO + REPEAT_RATIO && answered.length > 0) {
    repeatCall();
  } else {
    freshCall();
  }
}

export default addNumbers;

function readTotal() {
  const res = http.get(`${REST_URL}/api/total`, { tags: { name: '/api/total' }, timeout: '5s' });
  const doc = res.status === 200 ? parseJson(res.body) : null;
  if (doc === null || typeof doc.applied !== 'number') {
    return null;
  }
  return { total: doc.total, applied: doc.applied };
}

export function setup() {
  const baseline = readTotal();
  if (baseline === null) {
    console.warn(`no baseline from ${REST_URL}/api/total: the applied-count comparison will be skipped`);
  }
  return { baseline };
}

// A counter summed over every VU, from k6's REST API (0 when nothing was ever added to it).
function k6Counter(name) {
  const res = http.get(`http://${K6_API}/v1/metrics/${name}`, {
    tags: { name: 'k6 api' },
    timeout: '5s',
    responseCallback: http.expectedStatuses(200, 404),
  });
  if (res.status === 404) {
    return 0;
  }
  const doc = res.status === 200 ? parseJson(res.body) : null;
  if (doc === null || !doc.data || !doc.data.attributes || !doc.data.attributes.sample) {
    throw new Error(`k6 REST API at ${K6_API} answered ${res.status} for ${name} (set K6_API to k6's --address)`);
  }
  return doc.data.attributes.sample.count;
}

export function teardown(data) {
  if (!data || !data.baseline) {
    return;
  }
  // Wait until the accumulator has caught up: `applied` unchanged over three polls a second apart.
  // The polls also give k6 time to take in the VUs' last samples before its counters are read.
  const deadline = Date.now() + SETTLE_SECONDS * 1000;
  let last = readTotal();
  let stable = 0;
  while (Date.now() < deadline && stable < 3) {
    sleep(1);
    const now = readTotal();
    stable = now !== null && last !== null && now.applied === last.applied ? stable + 1 : 0;
    last = now;
  }
  if (last === null) {
    exec.test.fail(`applied check: MISMATCH (${REST_URL}/api/total unreadable at the end)`);
    return;
  }
  const applied = last.applied - data.baseline.applied;
  const total = Number(last.total) - Number(data.baseline.total);
  appliedDelta.add(applied);
  totalDelta.add(total);
  const verdict = compareApplied({
    accepted: k6Counter('sumflow_accepted_new'),
    maybe: k6Counter('sumflow_uncertain'),
    sum: k6Counter('sumflow_accepted_sum_pos') - k6Counter('sumflow_accepted_sum_neg'),
    applied,
    total,
  });
  if (verdict.startsWith('MISMATCH')) {
    exec.test.fail(`applied check: ${verdict}`);
  }
}

// The verdict on accepted distinct requests vs the growth of applied (and their sum vs the total).
function compareApplied({ accepted, maybe, sum, applied, total }) {
  if (applied === accepted && maybe === 0) {
    return total === sum ? 'OK' : 'MISMATCH (applied count matches, total does not)';
  }
  if (applied >= accepted && applied <= accepted + maybe) {
    return `OK (${applied - accepted} of ${maybe} calls without an answer were applied)`;
  }
  return 'MISMATCH';
}

function metricValue(data, name, stat) {
  const m = data.metrics[name];
  return m && m.values && typeof m.values[stat] === 'number' ? m.values[stat] : null;
}

// Accepted distinct requests vs the accumulator's applied count (and their sums vs the total).
export function appliedVerdict(data) {
  const accepted = metricValue(data, 'sumflow_accepted_new', 'count') || 0;
  const maybe = metricValue(data, 'sumflow_uncertain', 'count') || 0;
  const sum = (metricValue(data, 'sumflow_accepted_sum_pos', 'count') || 0) -
    (metricValue(data, 'sumflow_accepted_sum_neg', 'count') || 0);
  const applied = metricValue(data, 'sumflow_applied_delta', 'value');
  const total = metricValue(data, 'sumflow_total_delta', 'value');
  const verdict = applied === null ? 'SKIPPED (no /api/total baseline)' : compareApplied({ accepted, maybe, sum, applied, total });
  return { accepted_distinct: accepted, uncertain: maybe, accepted_sum: sum, applied_delta: applied, total_delta: total, verdict };
}

export function handleSummary(data) {
  const verdict = appliedVerdict(data);
  const text =
    textSummary(data, ['grpc_req_duration', 'http_req_duration']) +
    `accepted distinct requests: ${verdict.accepted_distinct}, applied delta: ${verdict.applied_delta}, ` +
    `sum of accepted results: ${verdict.accepted_sum}, total delta: ${verdict.total_delta}, ` +
    `calls without an answer: ${verdict.uncertain}\n` +
    `applied check: ${verdict.verdict}\n`;
  const out = { stdout: text };
  if (__ENV.SUMMARY_JSON) {
    out[__ENV.SUMMARY_JSON] = JSON.stringify({ applied_check: verdict, metrics: data.metrics, checks: data.root_group.checks }, null, 2);
  }
  return out;
}
