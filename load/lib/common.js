// Helpers shared by the sumflow k6 scripts (plain ES module: k6 and the static checks load it).

// Defaults are the Vagrant app node (inventory/vagrant: adder + accumulator on one host).
export const DEFAULT_APP_HOST = '192.168.56.21';
export const GRPC_TARGET = __ENV.SUMFLOW_GRPC_TARGET || `${DEFAULT_APP_HOST}:50051`;
// The deployed REST API is HTTPS (HAProxy with the internal CA's certificate): run k6 with SSL_CERT_FILE=<the CA>.
export const REST_URL = (__ENV.SUMFLOW_REST_URL || `https://${DEFAULT_APP_HOST}:8080`).replace(/\/+$/, '');

export function envNumber(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return fallback;
  }
  const value = Number(raw);
  if (!Number.isFinite(value)) {
    throw new Error(`${name}=${raw}: expected a number`);
  }
  return value;
}

export function envString(name, fallback) {
  const raw = __ENV[name];
  return raw === undefined || raw === '' ? fallback : raw;
}

// Scenario selection: SCENARIOS=closed,open (default both, the open model starting after the closed one).
export function selectedScenarios(all) {
  const wanted = envString('SCENARIOS', Object.keys(all).join(','))
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const chosen = {};
  let offset = 0;
  for (const name of wanted) {
    if (!(name in all)) {
      throw new Error(`SCENARIOS: unknown scenario ${name} (known: ${Object.keys(all).join(', ')})`);
    }
    chosen[name] = Object.assign({}, all[name].scenario, { startTime: `${offset}s` });
    offset += all[name].seconds;
  }
  return chosen;
}

// Total seconds of a list of k6 stages written as "<n>s".
// The two executors every script offers, with a peak stage each: `closed` (ramping-vus, a fixed
// population calling back to back, like the original test) and `open` (ramping-arrival-rate:
// arrivals at a set rate whatever the latency). `defaults` gives the per-script levels that the
// VUS, PEAK_VUS, RATE, PEAK_RATE, PRE_VUS and MAX_VUS environment variables override; GRACE_S is the
// graceful stop of each scenario (and the gap before the next one starts).
export function loadScenarios(exec, defaults) {
  const graceS = envNumber('GRACE_S', 10);
  const stages = (hold, peak) => [
    { duration: `${envNumber('RAMP_S', 30)}s`, target: hold },
    { duration: `${envNumber('HOLD_S', 60)}s`, target: hold },
    { duration: `${envNumber('PEAK_S', 20)}s`, target: peak },
    { duration: `${envNumber('RAMP_DOWN_S', 20)}s`, target: 0 },
  ];
  const closedStages = stages(envNumber('VUS', defaults.vus), envNumber('PEAK_VUS', defaults.peakVus));
  const rate = envNumber('RATE', defaults.rate);
  const openStages = stages(rate, envNumber('PEAK_RATE', defaults.peakRate));
  return {
    closed: {
      seconds: stagesSeconds(closedStages) + graceS,
      scenario: {
        executor: 'ramping-vus',
        exec,
        startVUs: 0,
        stages: closedStages,
        gracefulRampDown: `${graceS}s`,
        gracefulStop: `${graceS}s`,
      },
    },
    open: {
      seconds: stagesSeconds(openStages) + graceS,
      scenario: {
        executor: 'ramping-arrival-rate',
        exec,
        startRate: Math.max(1, Math.floor(rate / 10)),
        timeUnit: '1s',
        preAllocatedVUs: envNumber('PRE_VUS', defaults.preVus),
        maxVUs: envNumber('MAX_VUS', defaults.maxVus),
        stages: openStages,
        gracefulStop: `${graceS}s`,
      },
    },
  };
}

export function stagesSeconds(stages) {
  return stages.reduce((sum, stage) => sum + parseDuration(stage.duration), 0);
}

export function parseDuration(text) {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(String(text));
  if (!match) {
    throw new Error(`bad duration ${text}`);
  }
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 }[match[2]];
  return Number(match[1]) * unit;
}

// RFC 4122 version-4 UUID from Math.random (unique enough for load; no remote jslib import needed).
export function uuidv4() {
  const hex = '0123456789abcdef';
  let out = '';
  for (let i = 0; i < 36; i++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      out += '-';
    } else if (i === 14) {
      out += '4';
    } else if (i === 19) {
      out += hex[8 + Math.floor(Math.random() * 4)];
    } else {
      out += hex[Math.floor(Math.random() * 16)];
    }
  }
  return out;
}

export function randomInt(min, max) {
  return min + Math.floor(Math.random() * (max - min + 1));
}

export function pick(items) {
  return items[Math.floor(Math.random() * items.length)];
}

export function parseJson(body) {
  try {
    return JSON.parse(body);
  } catch (_err) {
    return null;
  }
}

function fmt(value, digits) {
  return typeof value === 'number' ? value.toFixed(digits) : 'n/a';
}

// A compact text summary (handleSummary replaces k6's default one).
export function textSummary(data, trendNames) {
  const lines = [];
  const metrics = data.metrics || {};
  for (const name of trendNames) {
    const m = metrics[name];
    if (m && m.values) {
      const v = m.values;
      lines.push(
        `${name}: avg=${fmt(v.avg, 2)}ms p(50)=${fmt(v.med, 2)}ms p(95)=${fmt(v['p(95)'], 2)}ms ` +
          `p(99)=${fmt(v['p(99)'], 2)}ms max=${fmt(v.max, 2)}ms`,
      );
    }
  }
  for (const name of ['iterations', 'http_reqs']) {
    const m = metrics[name];
    if (m && m.values) {
      lines.push(`${name}: ${m.values.count} (${fmt(m.values.rate, 1)}/s)`);
    }
  }
  if (metrics.checks && metrics.checks.values) {
    const v = metrics.checks.values;
    lines.push(`checks: ${fmt(100 * v.rate, 2)}% passed (${v.passes} passed, ${v.fails} failed)`);
  }
  if (metrics.http_req_failed && metrics.http_req_failed.values) {
    lines.push(`http_req_failed: ${fmt(100 * metrics.http_req_failed.values.rate, 2)}%`);
  }
  for (const [name, m] of Object.entries(metrics)) {
    for (const [expr, t] of Object.entries(m.thresholds || {})) {
      lines.push(`threshold ${name} ${expr}: ${t.ok ? 'ok' : 'FAILED'}`);
    }
  }
  return lines.join('\n') + '\n';
}
