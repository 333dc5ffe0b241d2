// Stand-in for `k6/metrics`: custom metrics record their samples for the summary.
import { addSample, declareMetric } from './state.mjs';

class Metric {
  constructor(type, name, isTime = false) {
    this.name = name;
    this.type = type;
    declareMetric(name, type, isTime ? 'time' : 'default');
  }

  add(value, tags = {}) {
    if (this.type === 'counter' && value < 0) {
      throw new Error(`counter ${this.name}: negative value ${value}`);
    }
    addSample(this.name, this.type, typeof value === 'boolean' ? Number(value) : value, tags);
  }
}

export class Counter extends Metric {
  constructor(name) {
    super('counter', name);
  }
}

export class Gauge extends Metric {
  constructor(name) {
    super('gauge', name);
  }
}

export class Rate extends Metric {
  constructor(name) {
    super('rate', name);
  }
}

export class Trend extends Metric {
  constructor(name, isTime = false) {
    super('trend', name, isTime);
  }
}

export default { Counter, Gauge, Rate, Trend };
