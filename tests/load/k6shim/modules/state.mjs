// Shared state of the stand-in k6 runtime: metric samples, recorded calls, a virtual clock.
export const state = {
  metrics: new Map(), // name -> {type, contains, samples: [{value, tags}]}
  checks: new Map(), // check name -> {passes, fails}
  grpcCalls: [],
  grpcLoads: [],
  grpcConnects: [],
  httpCalls: [],
  sleeps: [],
  clockOffsetMs: 0,
  config: null, // the runner's config (models of the proto and the OpenAPI document)
  system: null, // the simulated system (set by the runner)
};

const realNow = Date.now.bind(Date);
Date.now = () => realNow() + state.clockOffsetMs;

export function addSample(name, type, value, tags = {}, contains = 'default') {
  let metric = state.metrics.get(name);
  if (metric === undefined) {
    metric = { type, contains, samples: [] };
    state.metrics.set(name, metric);
  } else if (metric.type !== type) {
    throw new Error(`metric ${name} used as ${type} and ${metric.type}`);
  }
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new Error(`metric ${name}: value ${value} is not a number`);
  }
  metric.samples.push({ value, tags });
}

export function declareMetric(name, type, contains = 'default') {
  if (!/^[a-zA-Z_][a-zA-Z0-9_]{0,127}$/.test(name)) {
    throw new Error(`invalid metric name ${name}`);
  }
  const existing = state.metrics.get(name);
  if (existing !== undefined && existing.type !== type) {
    throw new Error(`metric ${name} declared as ${type} and ${existing.type}`);
  }
  if (existing === undefined) {
    state.metrics.set(name, { type, contains, samples: [] });
  }
}
