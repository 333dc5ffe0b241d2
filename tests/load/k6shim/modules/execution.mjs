// Stand-in for `k6/execution` (one VU).
export const vu = {
  get idInTest() {
    return globalThis.__VU;
  },
  get iterationInScenario() {
    return globalThis.__ITER;
  },
};
export const scenario = { name: 'default', iterationInTest: 0 };
export const test = {
  abort(reason) {
    throw new Error(`test.abort: ${reason}`);
  },
};
export default { vu, scenario, test };
