// Stand-in for `k6/net/grpc`: the Client records load/connect/invoke and answers from the simulated
// system the runner built from the real proto (responses shaped as k6 shapes them: protojson with
// lowerCamelCase names, int64 as strings, unpopulated fields emitted).
import { addSample, state } from './state.mjs';

export const StatusOK = 0;
export const StatusCanceled = 1;
export const StatusUnknown = 2;
export const StatusInvalidArgument = 3;
export const StatusDeadlineExceeded = 4;
export const StatusNotFound = 5;
export const StatusAlreadyExists = 6;
export const StatusPermissionDenied = 7;
export const StatusResourceExhausted = 8;
export const StatusFailedPrecondition = 9;
export const StatusAborted = 10;
export const StatusOutOfRange = 11;
export const StatusUnimplemented = 12;
export const StatusInternal = 13;
export const StatusUnavailable = 14;
export const StatusDataLoss = 15;
export const StatusUnauthenticated = 16;

let initDone = false;
export function markInitDone() {
  initDone = true;
}

export class Client {
  constructor() {
    if (initDone) {
      throw new Error('grpc.Client must be created in the init context');
    }
    this.loaded = false;
    this.connected = false;
  }

  load(importPaths, ...files) {
    if (initDone) {
      throw new Error('client.load must be called in the init context');
    }
    state.grpcLoads.push({ importPaths, files });
    this.loaded = true;
  }

  connect(address, params = {}) {
    if (!initDone) {
      throw new Error('client.connect is only allowed in VU code, not in the init context');
    }
    state.grpcConnects.push({ address, params });
    this.connected = true;
  }

  invoke(method, request, params = {}) {
    if (!this.loaded) {
      throw new Error('invoke before client.load');
    }
    if (!this.connected) {
      throw new Error('no gRPC connection, you must call connect first');
    }
    state.grpcCalls.push({ method, request, params });
    const res = state.system.grpcInvoke(method, request);
    addSample('grpc_reqs', 'counter', 1, { method, ...(params.tags || {}) });
    addSample('grpc_req_duration', 'trend', 1 + Math.random() * 4, { method, ...(params.tags || {}) }, 'time');
    return res;
  }

  close() {
    this.connected = false;
  }
}

export default {
  Client,
  StatusOK,
  StatusCanceled,
  StatusUnknown,
  StatusInvalidArgument,
  StatusDeadlineExceeded,
  StatusNotFound,
  StatusAlreadyExists,
  StatusPermissionDenied,
  StatusResourceExhausted,
  StatusFailedPrecondition,
  StatusAborted,
  StatusOutOfRange,
  StatusUnimplemented,
  StatusInternal,
  StatusUnavailable,
  StatusDataLoss,
  StatusUnauthenticated,
};
