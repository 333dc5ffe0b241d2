// Stand-in for the `k6` module: check, sleep, group, fail.
import { addSample, state } from './state.mjs';

export function check(value, sets, tags = {}) {
  let all = true;
  for (const [name, fn] of Object.entries(sets)) {
    const ok = Boolean(typeof fn === 'function' ? fn(value) : fn);
    const counts = state.checks.get(name) || { passes: 0, fails: 0 };
    if (ok) {
      counts.passes += 1;
    } else {
      counts.fails += 1;
      all = false;
    }
    state.checks.set(name, counts);
    addSample('checks', 'rate', ok ? 1 : 0, { check: name, ...tags });
  }
  return all;
}

export function sleep(seconds) {
  if (typeof seconds !== 'number' || !(seconds >= 0)) {
    throw new Error(`sleep(${seconds}): expected a non-negative number of seconds`);
  }
  state.sleeps.push(seconds);
  state.clockOffsetMs += seconds * 1000;
}

export function group(name, fn) {
  return fn();
}

export function fail(message) {
  throw new Error(message);
}

export default { check, sleep, group, fail };
