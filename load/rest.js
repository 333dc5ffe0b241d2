// k6 REST load for the sumflow accumulator's read endpoints, chosen at random, with random think time.
//
//   k6 run load/rest.js                                   # Vagrant defaults, both scenarios
//   SUMFLOW_REST_URL=http://127.0.0.1:8080 SCENARIOS=closed VUS=100 k6 run load/rest.js
//   SSL_CERT_FILE=ca.pem SUMFLOW_REST_URL=https://app.example:8443 k6 run load/rest.js
//
// HTTPS: k6 checks the server against the system roots, which SSL_CERT_FILE replaces with a PEM CA
// bundle (k6 has no option of its own for a CA file).
//
// Each iteration picks one read endpoint by weight and checks its status and JSON shape; a small
// share of calls sends a bad `limit` on purpose and expects 400 with a JSON error (not counted as a
// failed request). Think time between calls is uniform in [THINK_MIN_S, THINK_MAX_S].
import http from 'k6/http';
import { check, sleep } from 'k6';

import {
  REST_URL,
  envNumber,
  loadScenarios,
  parseJson,
  pick,
  randomInt,
  selectedScenarios,
  textSummary,
} from './lib/common.js';

const THINK_MIN_S = envNumber('THINK_MIN_S', 0.3);
const THINK_MAX_S = envNumber('THINK_MAX_S', 2);
const BAD_LIMIT_RATIO = envNumber('BAD_LIMIT_RATIO', 0.02);
const TIMEOUT = `${envNumber('HTTP_TIMEOUT_S', 10)}s`;

const isInt = (v) => typeof v === 'number' && Number.isInteger(v);
const jsonBody = (r) => (r.headers['Content-Type'] || '').indexOf('application/json') === 0 ? parseJson(r.body) : null;

// Read endpoints with their weights and the shape each must answer with.
export const ENDPOINTS = [
  {
    path: '/api/total',
    weight: 40,
    url: () => `${REST_URL}/api/total`,
    checks: {
      'total: 200': (r) => r.status === 200,
      'total: {total, applied} integers': (r) => {
        const doc = jsonBody(r);
        return doc !== null && isInt(doc.total) && isInt(doc.applied) && doc.applied >= 0;
      },
    },
  },
  {
    path: '/api/summations',
    weight: 25,
    url: () => `${REST_URL}/api/summations?limit=${randomInt(1, 100)}`,
    checks: {
      'summations: 200': (r) => r.status === 200,
      'summations: JSON with a list of summations': (r) => {
        const doc = jsonBody(r);
        return doc !== null && Array.isArray(doc.summations) && isInt(doc.limit);
      },
    },
  },
  {
    path: '/api/final',
    weight: 15,
    url: () => `${REST_URL}/api/final`,
    checks: {
      'final: 200': (r) => r.status === 200,
      'final: bare integer': (r) => /^-?\d+$/.test(String(r.body).trim()),
    },
  },
  {
    path: '/healthz',
    weight: 10,
    url: () => `${REST_URL}/healthz`,
    checks: {
      'healthz: 200': (r) => r.status === 200,
      'healthz: status ok': (r) => {
        const doc = jsonBody(r);
        return doc !== null && doc.status === 'ok';
      },
    },
  },
  {
    path: '/readyz',
    weight: 10,
    url: () => `${REST_URL}/readyz`,
    checks: {
      'readyz: 200': (r) => r.status === 200,
      'readyz: status ready': (r) => {
        const doc = jsonBody(r);
        return doc !== null && doc.status === 'ready';
      },
    },
  },
];

// Bad `limit` values the API must refuse with 400 and a JSON error body.
const BAD_LIMITS = ['0', '-1', 'abc', '1001', '1.5'];

const ALL_SCENARIOS = loadScenarios('readEndpoints', { vus: 100, peakVus: 1000, rate: 200, peakRate: 1000, preVus: 100, maxVus: 2000 });

export const options = {
  scenarios: selectedScenarios(ALL_SCENARIOS),
  thresholds: {
    http_req_failed: [`rate<${envNumber('HTTP_FAILED_MAX_RATE', 0.01)}`],
    http_req_duration: [`p(95)<${envNumber('HTTP_P95_MS', 300)}`, `p(99)<${envNumber('HTTP_P99_MS', 1000)}`],
    'http_req_duration{name:/api/total}': [`p(99)<${envNumber('HTTP_P99_MS', 1000)}`],
    checks: [`rate>${envNumber('CHECKS_MIN_RATE', 0.99)}`],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
};

const TOTAL_WEIGHT = ENDPOINTS.reduce((sum, e) => sum + e.weight, 0);

function chooseEndpoint() {
  let roll = Math.random() * TOTAL_WEIGHT;
  for (const endpoint of ENDPOINTS) {
    roll -= endpoint.weight;
    if (roll < 0) {
      return endpoint;
    }
  }
  return ENDPOINTS[ENDPOINTS.length - 1];
}

function badLimitCall() {
  const res = http.get(`${REST_URL}/api/summations?limit=${encodeURIComponent(pick(BAD_LIMITS))}`, {
    tags: { name: '/api/summations (bad limit)' },
    timeout: TIMEOUT,
    responseCallback: http.expectedStatuses(400),
  });
  check(res, {
    'bad limit: 400': (r) => r.status === 400,
    'bad limit: JSON error': (r) => {
      const doc = jsonBody(r);
      return doc !== null && typeof doc.error === 'string';
    },
  });
}

export function readEndpoints() {
  if (Math.random() < BAD_LIMIT_RATIO) {
    badLimitCall();
  } else {
    const endpoint = chooseEndpoint();
    const res = http.get(endpoint.url(), { tags: { name: endpoint.path }, timeout: TIMEOUT });
    check(res, endpoint.checks);
  }
  sleep(THINK_MIN_S + Math.random() * (THINK_MAX_S - THINK_MIN_S));
}

export default readEndpoints;

export function handleSummary(data) {
  const out = { stdout: textSummary(data, ['http_req_duration']) };
  if (__ENV.SUMMARY_JSON) {
    out[__ENV.SUMMARY_JSON] = JSON.stringify({ metrics: data.metrics, checks: data.root_group.checks }, null, 2);
  }
  return out;
}
