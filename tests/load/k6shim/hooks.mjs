// Node module hooks: `k6` and `k6/*` resolve to the stand-ins in modules/, and every .js file is
// loaded as an ES module (k6 scripts are ES modules without a package.json saying so).
const BUILTINS = {
  k6: 'k6.mjs',
  'k6/http': 'http.mjs',
  'k6/net/grpc': 'grpc.mjs',
  'k6/metrics': 'metrics.mjs',
  'k6/execution': 'execution.mjs',
};

export async function resolve(specifier, context, nextResolve) {
  if (specifier === 'k6' || specifier.startsWith('k6/')) {
    const file = BUILTINS[specifier];
    if (file === undefined) {
      throw new Error(`k6 module ${specifier} has no stand-in in tests/load/k6shim (add one or avoid it)`);
    }
    return { url: new URL(`./modules/${file}`, import.meta.url).href, shortCircuit: true };
  }
  if (/^https?:/.test(specifier)) {
    throw new Error(`remote import ${specifier}: the load scripts must not need the network to start`);
  }
  return nextResolve(specifier, context);
}

export async function load(url, context, nextLoad) {
  if (url.startsWith('file:') && url.endsWith('.js')) {
    const result = await nextLoad(url, { ...context, format: 'module' });
    return { ...result, format: 'module', shortCircuit: true };
  }
  return nextLoad(url, context);
}
