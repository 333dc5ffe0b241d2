// Stand-in for `k6/http`: GET requests are answered by the simulated accumulator built from the
// real OpenAPI document; metrics as k6 records them (http_reqs, http_req_duration, http_req_failed).
import { addSample, state } from './state.mjs';

let defaultCallback = null;

export function expectedStatuses(...codes) {
  const set = new Set();
  for (const c of codes) {
    if (typeof c === 'number') {
      set.add(c);
    } else {
      for (let s = c.min; s <= c.max; s++) {
        set.add(s);
      }
    }
  }
  return { expected: set };
}

export function setResponseCallback(callback) {
  defaultCallback = callback;
}

function isExpected(status, callback) {
  if (callback === null || callback === undefined) {
    return status >= 200 && status < 400;
  }
  return callback.expected.has(status);
}

export function request(method, url, body = null, params = {}) {
  if (typeof url !== 'string') {
    throw new Error(`http.${method.toLowerCase()}: url must be a string`);
  }
  state.httpCalls.push({ method, url, params });
  const res = state.system.httpRequest(method, url);
  const tags = { method, name: url, ...(params.tags || {}) };
  const callback = 'responseCallback' in params ? params.responseCallback : defaultCallback;
  const failed = !isExpected(res.status, callback);
  addSample('http_reqs', 'counter', 1, tags);
  addSample('http_req_duration', 'trend', 1 + Math.random() * 4, tags, 'time');
  addSample('http_req_failed', 'rate', failed ? 1 : 0, tags);
  return {
    status: res.status,
    body: res.body,
    headers: res.headers,
    url,
    json: () => JSON.parse(res.body),
  };
}

export function get(url, params = {}) {
  return request('GET', url, null, params);
}

export default { get, request, expectedStatuses, setResponseCallback };
