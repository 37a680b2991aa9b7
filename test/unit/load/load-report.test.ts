import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import { IDLE_LOAD, loadReport, MAX_SPAN_SECONDS, orcaJson, spanReport } from '../../../gateway/load/load-report.js';
import { decodeOrcaReport, decodeOrcaRequest, encodeOrcaReport } from '../../../gateway/load/orca-service.js';

const window = { seconds: 2, cpuSeconds: 1, cores: 4, requests: 400, failures: 10, busyNs: 1e9, queuedNs: 0, instances: 2 };

describe('loadReport', () => {
  it('rates per second, CPU over the host cores, busy time over the instances\' time', () => {
    expect(loadReport(window)).toEqual({ cpuUtilization: 0.125, applicationUtilization: 0.25, rpsFractional: 200, eps: 5 });
  });

  it('counts the queued work: a backlog reads above 1', () => {
    expect(loadReport({ ...window, busyNs: 4e9, queuedNs: 2e9 }).applicationUtilization).toBe(1.5);
  });

  it('reports nothing for an empty or unknown window, and no NaN (no /proc, no instance at work)', () => {
    expect(loadReport({ ...window, seconds: 0 })).toBe(IDLE_LOAD);
    const r = loadReport({ ...window, cpuSeconds: NaN, instances: 0 });
    expect([r.cpuUtilization, r.applicationUtilization]).toEqual([0, 0]);
  });

  it('ORCA field names on HTTP', () => {
    expect(orcaJson(loadReport(window))).toEqual({ cpu_utilization: 0.125, application_utilization: 0.25, rps_fractional: 200, eps: 5 });
  });
});

describe('spanReport', () => {
  const idle = { seconds: 0.2, cpuSeconds: 0.01, cores: 4, requests: 0, failures: 0, busyNs: 0, queuedNs: 0, instances: 0 };

  it('is the newest window when it saw a request', () => {
    expect(spanReport([window, { ...window, requests: 20 }])).toEqual(loadReport({ ...window, requests: 20 }));
  });

  it('looks back over windows without requests to the last that had one: a gateway sent little still reports a rate and its idle instances', () => {
    // One request of 1 ms, 3 s ago, then fifteen empty windows: 1 request over 3.2 s, 1 ms of one instance's 3.2 s.
    const one = { ...idle, requests: 1, busyNs: 1e6, instances: 1 };
    const r = spanReport([window, one, ...Array.from({ length: 15 }, () => idle)]);
    expect(r.rpsFractional).toBeCloseTo(1 / 3.2, 9);
    expect(r.applicationUtilization).toBeCloseTo(1e6 / 3.2e9, 12);
    expect(r.cpuUtilization).toBeCloseTo((16 * 0.01) / 3.2 / 4, 9);
    // weighted_round_robin's weight, rps / utilisation, is defined and high.
    expect(r.rpsFractional / r.applicationUtilization).toBeGreaterThan(900);
  });

  it('counts the work queued as the newest window saw it', () => {
    const r = spanReport([{ ...idle, requests: 1, busyNs: 1e6, instances: 1 }, { ...idle, queuedNs: 4e8 }]);
    expect(r.applicationUtilization).toBeCloseTo((1e6 + 4e8) / 0.4e9, 9);
  });

  it('looks back at most MAX_SPAN_SECONDS: an idle gateway reports no rate', () => {
    const windows = [{ ...idle, requests: 5, instances: 1, busyNs: 1e6 }, ...Array.from({ length: 5 * MAX_SPAN_SECONDS }, () => idle)];
    const r = spanReport(windows);
    expect([r.rpsFractional, r.applicationUtilization]).toEqual([0, 0]);
    expect(spanReport([])).toBe(IDLE_LOAD);
  });
});

describe('ORCA wire format', () => {
  it('a report round-trips; zeros are left out as proto3 does', () => {
    const r = { cpuUtilization: 0.5, applicationUtilization: 1.25, rpsFractional: 123.5, eps: 0 };
    expect(decodeOrcaReport(encodeOrcaReport(r))).toEqual(r);
    expect(encodeOrcaReport(IDLE_LOAD).byteLength).toBe(0);
    // Fields 1, 6 and 9 as doubles: 3 × (1 tag byte + 8).
    expect(encodeOrcaReport(r).byteLength).toBe(27);
  });

  it('a report with fields it does not know (named metrics, request costs) still decodes', () => {
    const w = new BinaryWriter();
    w.tag(1, WireType.Bit64).double(0.75);
    w.tag(8, WireType.LengthDelimited).bytes(new Uint8Array([10, 1, 97, 17, 0, 0, 0, 0, 0, 0, 240, 63]));
    w.tag(3, WireType.Varint).uint64(7);
    expect(decodeOrcaReport(w.finish()).cpuUtilization).toBe(0.75);
  });

  it('the interval a client asks: Duration seconds and nanos; none asked is 0', () => {
    const d = new BinaryWriter().tag(1, WireType.Varint).int64(2).tag(2, WireType.Varint).int32(500_000_000).finish();
    const request = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(d).tag(2, WireType.LengthDelimited).string('cost').finish();
    expect(decodeOrcaRequest(request)).toEqual({ reportIntervalMs: 2500 });
    expect(decodeOrcaRequest(new Uint8Array())).toEqual({ reportIntervalMs: 0 });
    // A year: more than a timer takes (it would fire every millisecond), so the longest it does.
    const year = new BinaryWriter().tag(1, WireType.Varint).int64(365 * 86_400).finish();
    expect(decodeOrcaRequest(new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(year).finish())).toEqual({ reportIntervalMs: 2 ** 31 - 1 });
  });
});
