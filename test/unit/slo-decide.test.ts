import { describe, expect, it } from 'vitest';
import { BURST_SHARE, decideSlo, newcomerRows, QUIET_GAPS, SHARED_LATENCY_FACTOR, type SloEntry, type SloInput } from '../../gateway/batching/slo-decide.js';

// The SLO-aware decision with explicit clocks and cost tables (ms → ns).

const MS = 1_000_000n;
/** 10 ms + 2 ms a row. */
const table = (rows: number): number => (10 + 2 * rows) * 1e6;

function input(more: Partial<SloInput> & { queued: SloEntry[] }): SloInput {
  return { now: 1_000n * MS, maxBatch: 8, sloNs: 100n * MS, idle: true, busyUntilNs: undefined, cost: table, arrivalRowsPerNs: 0, ...more };
}
const at = (ms: number): bigint => 1_000n * MS + BigInt(ms) * MS;
const req = (deadlineMs?: number, rows = 1): SloEntry => ({ rows, deadlineNs: deadlineMs === undefined ? undefined : at(deadlineMs) });

describe('decideSlo', () => {
  it('is idle with nothing queued, and cuts at once while the cost model is cold', () => {
    expect(decideSlo(input({ queued: [] }))).toEqual({ kind: 'idle' });
    expect(decideSlo(input({ queued: [req(50)], cost: () => undefined, arrivalRowsPerNs: 1 }))).toEqual({ kind: 'cut', count: 1, ahead: false });
  });

  it('cuts a full batch at once, ahead into a busy instance if none is idle', () => {
    const queued = Array.from({ length: 9 }, () => req(500));
    expect(decideSlo(input({ queued }))).toEqual({ kind: 'cut', count: 8, ahead: false });
    expect(decideSlo(input({ queued, idle: false, busyUntilNs: at(20) }))).toEqual({ kind: 'cut', count: 8, ahead: true });
  });

  it('while tenants share the model, sends nothing ahead into a busy instance: holds until one frees', () => {
    const queued = Array.from({ length: 9 }, () => req(500));
    const shared = { queued, idle: false, busyUntilNs: at(20), dispatchNs: 2e6, shared: true };
    // Cut now, its members would be fixed a whole run before theirs starts: another tenant's request arriving
    // meanwhile would wait for the run after it. Not even at the moment to dispatch it (the run may overrun).
    expect(decideSlo(input(shared))).toEqual({ kind: 'hold' });
    expect(decideSlo(input({ ...shared, now: at(19) }))).toEqual({ kind: 'hold' });
    expect(decideSlo(input({ ...shared, now: at(40) }))).toEqual({ kind: 'hold' });
    // A batch short of full, even one that must start at the next free instance to meet a deadline; and while cold.
    expect(decideSlo(input({ ...shared, queued: [req(30)] }))).toEqual({ kind: 'hold' });
    expect(decideSlo(input({ ...shared, cost: () => undefined }))).toEqual({ kind: 'hold' });
    // An idle instance: cut now. Not shared: ahead, as ever.
    expect(decideSlo(input({ ...shared, idle: true }))).toEqual({ kind: 'cut', count: 8, ahead: false });
    expect(decideSlo(input({ ...shared, shared: false }))).toEqual({ kind: 'cut', count: 8, ahead: true });
  });

  it('cuts a backlog past the full (efficient) size up to largestBatch while its earliest deadline allows', () => {
    const queued = Array.from({ length: 14 }, () => req(500));
    expect(decideSlo(input({ queued, largestBatch: 12 }))).toEqual({ kind: 'cut', count: 12, ahead: false });
    // The first is due in 32 ms: 10 rows run 30 ms, 11 rows 32 ms, 12 rows 34 ms.
    expect(decideSlo(input({ queued: [req(32), ...queued], largestBatch: 12 }))).toEqual({ kind: 'cut', count: 11, ahead: false });
    // A request arriving just after the cut must still fit the SLO behind it: its run plus a full batch (8 rows,
    // 26 ms). SLO 56 ms: the batch may take 30 ms, 10 rows; SLO 40 ms: not past the full batch.
    expect(decideSlo(input({ queued, largestBatch: 12, sloNs: 56n * MS }))).toEqual({ kind: 'cut', count: 10, ahead: false });
    expect(decideSlo(input({ queued, largestBatch: 12, sloNs: 40n * MS }))).toEqual({ kind: 'cut', count: 8, ahead: false });
    // Sent ahead, it starts when the busy instance frees (in 10 ms): 8 rows (26 ms) end at 36 ms, 9 would end at 38.
    expect(decideSlo(input({ queued: [req(37), ...queued], largestBatch: 12, idle: false, busyUntilNs: at(10) }))).toEqual({ kind: 'cut', count: 8, ahead: true });
    // Sent ahead, a request arriving just after the cut also waits for the busy instance to free. SLO 66 ms: cut
    // onto an idle instance the batch may take 40 ms (12 rows, all there are); sent ahead into an instance busy
    // for 10 ms more, 30 ms (10 rows); and an instance past its expected end counts as freeing now.
    expect(decideSlo(input({ queued, largestBatch: 12, sloNs: 66n * MS }))).toEqual({ kind: 'cut', count: 12, ahead: false });
    expect(decideSlo(input({ queued, largestBatch: 12, sloNs: 66n * MS, idle: false, busyUntilNs: at(10) }))).toEqual({ kind: 'cut', count: 10, ahead: true });
    expect(decideSlo(input({ queued, largestBatch: 12, sloNs: 66n * MS, idle: false, busyUntilNs: at(-5) }))).toEqual({ kind: 'cut', count: 12, ahead: true });
  });

  it('with an idle instance, waits for the batch to fill while every member stays in time', () => {
    // 2 rows queued, 1 row a ms expected: full in 6 ms; a full batch runs 26 ms, the deadline is 100 ms away.
    const d = decideSlo(input({ queued: [req(100), req(120)], arrivalRowsPerNs: 1 / 1e6 }));
    expect(d).toEqual({ kind: 'wait', untilNs: at(6) });
  });

  it('waits only until the batch reaches the size that keeps up with arrivals, not until it is full', () => {
    // 0.2 rows a ms: 4 rows (18 ms) keep up (3.6 arrive meanwhile), 3 rows (16 ms) do not. 2 queued: 2 more in 10 ms.
    expect(decideSlo(input({ queued: [req(200), req(200)], arrivalRowsPerNs: 0.2 / 1e6 }))).toEqual({ kind: 'wait', untilNs: at(10) });
    // 0.1 rows a ms: 2 rows keep up. A request without a deadline is due at now + the SLO.
    expect(decideSlo(input({ queued: [req()], arrivalRowsPerNs: 0.1 / 1e6, sloNs: 30n * MS }))).toEqual({ kind: 'wait', untilNs: at(10) });
  });

  it('judges keeping up on the instance\'s compute alone: the transport overlaps other batches', () => {
    // 0.2 rows a ms. From cut to answer 2 rows take 14 ms + 10 ms of transport (4.8 rows arrive meanwhile), but
    // the instance computes them in 4 ms + 2 ms a row = 8 ms (1.6 arrive): they keep up, so they go now.
    const withTransport = (rows: number): number => (24 + 2 * rows) * 1e6;
    const computeOnly = (rows: number): number => (4 + 2 * rows) * 1e6;
    const queued = [req(200), req(200)];
    expect(decideSlo(input({ queued, arrivalRowsPerNs: 0.2 / 1e6, cost: withTransport }))).toMatchObject({ kind: 'wait' });
    expect(decideSlo(input({ queued, arrivalRowsPerNs: 0.2 / 1e6, cost: withTransport, compute: computeOnly }))).toEqual({ kind: 'cut', count: 2, ahead: false });
  });

  it('waits no later than the earliest deadline allows for the batch it waits for, then cuts', () => {
    // Waiting for 4 rows (at 10 ms), but a member is due in 25 ms and 4 rows run 18 ms: start by 7 ms.
    const slow = input({ queued: [req(25), req(200)], arrivalRowsPerNs: 0.2 / 1e6 });
    expect(decideSlo(slow)).toEqual({ kind: 'wait', untilNs: at(7) });
    expect(decideSlo({ ...slow, now: at(7) })).toEqual({ kind: 'cut', count: 2, ahead: false });
  });

  it('cuts at once when no more rows are expected', () => {
    expect(decideSlo(input({ queued: [req(100)], arrivalRowsPerNs: 0 }))).toEqual({ kind: 'cut', count: 1, ahead: false });
  });

  it('cuts at once when the batch as it is keeps up with arrivals: waiting would add latency and serve no more', () => {
    // 2 rows run 14 ms; 1 row every 7 ms arrives meanwhile: 2 ≤ 2, it keeps up.
    expect(decideSlo(input({ queued: [req(100), req(100)], arrivalRowsPerNs: 1 / 7e6 }))).toEqual({ kind: 'cut', count: 2, ahead: false });
    // A little faster and it would fall behind: wait for the batch to grow.
    expect(decideSlo(input({ queued: [req(100), req(100)], arrivalRowsPerNs: 1 / 6e6 })).kind).toBe('wait');
  });

  it('without an idle instance, waits for it so the batch can grow, unless growing would make a member miss', () => {
    // Instance frees at 20 ms; 2 rows now, 0.2 rows a ms: 6 rows by then (22 ms run) → finish at 42 ms.
    const base = { queued: [req(100), req(100)], idle: false, busyUntilNs: at(20), arrivalRowsPerNs: 0.2 / 1e6 };
    expect(decideSlo(input(base))).toEqual({ kind: 'wait', untilNs: at(20) });
    // Due at 40 ms: as it is (14 ms) it makes it from 20 ms, grown (22 ms) it would not: send ahead now.
    expect(decideSlo(input({ ...base, queued: [req(40), req(100)] }))).toEqual({ kind: 'cut', count: 2, ahead: true });
    // Due at 30 ms: it misses either way (shedding will take it): no point freezing the batch.
    expect(decideSlo(input({ ...base, queued: [req(30), req(100)] }))).toEqual({ kind: 'wait', untilNs: at(20) });
  });

  it('takes whole requests up to max_batch_size: a request of several rows that does not fit ends the batch', () => {
    const d = decideSlo(input({ queued: [req(500, 3), req(500, 4), req(500, 2)], arrivalRowsPerNs: 0 }));
    expect(d).toEqual({ kind: 'cut', count: 2, ahead: false });
  });
});

describe('decideSlo, arrivals that stopped', () => {
  const base = { queued: [req(1000), req(1000)], arrivalRowsPerNs: 1 / 1e6 };
  it('waits no longer than QUIET_GAPS expected gaps after the last arrival', () => {
    // 1 row a ms: full in 6 ms, but no row came since 1 ms ago: stop waiting at 2 ms.
    expect(decideSlo(input({ ...base, lastArrivalNs: at(-1) }))).toEqual({ kind: 'wait', untilNs: at(QUIET_GAPS - 1) });
  });
  it('cuts once no row came for QUIET_GAPS expected gaps (a closed loop whose callers all wait in this batch)', () => {
    expect(decideSlo(input({ ...base, lastArrivalNs: at(-QUIET_GAPS) }))).toEqual({ kind: 'cut', count: 2, ahead: false });
  });
});

describe('decideSlo, a burst of arrivals', () => {
  // 2 rows queued, an idle instance, 0.1 rows a ms on average (a gap of 10 ms): a batch of 2 (14 ms) keeps up, and
  // would be cut now.
  const base = { queued: [req(500), req(500)], arrivalRowsPerNs: 0.1 / 1e6, meanGapNs: 10e6, lastArrivalNs: at(0) };
  const gapMs = 0.5;
  it('cuts a batch that keeps up at once when rows come at their average pace', () => {
    expect(decideSlo(input(base))).toEqual({ kind: 'cut', count: 2, ahead: false });
    // Recent gaps shorter than average, but not a burst: more than BURST_SHARE of the mean gap.
    expect(decideSlo(input({ ...base, recentGapNs: (10 * BURST_SHARE + 0.1) * 1e6 }))).toEqual({ kind: 'cut', count: 2, ahead: false });
    // Unknown gaps: no burst.
    expect(decideSlo(input({ ...base, recentGapNs: gapMs * 1e6, meanGapNs: undefined }))).toEqual({ kind: 'cut', count: 2, ahead: false });
  });
  it('does not wait out a burst longer than the batch takes to compute', () => {
    // Gaps of 5 ms against a mean of 100: a burst, but waiting 3 of them (15 ms) is longer than the batch's 14 ms run.
    expect(decideSlo(input({ ...base, meanGapNs: 100e6, recentGapNs: 5e6 }))).toEqual({ kind: 'cut', count: 2, ahead: false });
    expect(decideSlo(input({ ...base, meanGapNs: 100e6, recentGapNs: 4e6 }))).toEqual({ kind: 'wait', untilNs: at(12) });
  });
  it('waits for a burst to end: QUIET_GAPS of its own gaps after the last row', () => {
    expect(decideSlo(input({ ...base, recentGapNs: gapMs * 1e6 }))).toEqual({ kind: 'wait', untilNs: at(0) + BigInt(QUIET_GAPS * gapMs * 1e6) });
  });
  it('cuts once the burst has ended, or when waiting for it would leave no time for the largest batch', () => {
    expect(decideSlo(input({ ...base, recentGapNs: gapMs * 1e6, now: at(0) + BigInt(QUIET_GAPS * gapMs * 1e6) }))).toEqual({ kind: 'cut', count: 2, ahead: false });
    // Due at 27 ms: the burst's end at 1.5 ms, then a full batch (26 ms), would pass it.
    expect(decideSlo(input({ ...base, queued: [req(27), req(500)], recentGapNs: gapMs * 1e6 }))).toEqual({ kind: 'cut', count: 2, ahead: false });
    expect(decideSlo(input({ ...base, queued: [req(28), req(500)], recentGapNs: gapMs * 1e6 })).kind).toBe('wait');
  });
});

describe('decideSlo, dispatch ahead of a busy instance', () => {
  // Instance computes until 20 ms; loose deadlines, rows arriving: the batch would wait to grow.
  const base = { queued: [req(1000), req(1000)], idle: false, busyUntilNs: at(20), arrivalRowsPerNs: 0.2 / 1e6 };
  it('waits until the dispatch time before the instance ends its compute, not until it ends', () => {
    expect(decideSlo(input({ ...base, dispatchNs: 3e6 }))).toEqual({ kind: 'wait', untilNs: at(17) });
  });
  it('sends ahead once within the dispatch time, so the instance does not idle between batches', () => {
    expect(decideSlo(input({ ...base, dispatchNs: 3e6, now: at(17) }))).toEqual({ kind: 'cut', count: 2, ahead: true });
    // Its compute should have ended already (the answer is on its way back): send ahead at once.
    expect(decideSlo(input({ ...base, now: at(25) }))).toEqual({ kind: 'cut', count: 2, ahead: true });
  });
});

describe('decideSlo, callers in a closed loop near capacity', () => {
  // 0.2 rows a ms. Four rows queued in a burst (gaps of 0.1 ms against a mean of 5) that ended 10 ms ago; the instance has just
  // answered a batch of 4, whose callers send again. Both in one run (26 ms) save 10 ms against two (18 + 18).
  const four = [req(500), req(500), req(500), req(500)];
  const closed = {
    queued: four,
    arrivalRowsPerNs: 0.2 / 1e6,
    recentGapNs: 0.1e6,
    meanGapNs: 5e6,
    lastArrivalNs: at(-10),
    answeredNs: at(-1),
    answeredRows: 4,
    // Callers lately came back 2 ms after their answers.
    returnNs: 2e6,
  };
  it('waits for the callers of the batch just answered, as long as the run it saves', () => {
    expect(decideSlo(input(closed))).toEqual({ kind: 'wait', untilNs: at(9) });
    // Answered long ago: the wait has passed; the batch keeps up with arrivals, so it is cut.
    expect(decideSlo(input({ ...closed, answeredNs: at(-11) }))).toEqual({ kind: 'cut', count: 4, ahead: false });
    // Only as many as fit: of 6 answered, 4 more fill the batch and save the same 10 ms.
    expect(decideSlo(input({ ...closed, answeredRows: 6 }))).toEqual({ kind: 'wait', untilNs: at(9) });
    // Callers that lately took longer to come back than the compute merging saves (open-loop arrivals near
    // capacity take about a batch's compute), or never timed: not waited for.
    expect(decideSlo(input({ ...closed, returnNs: 11e6 }))).toEqual({ kind: 'cut', count: 4, ahead: false });
    expect(decideSlo(input({ ...closed, returnNs: undefined }))).toEqual({ kind: 'cut', count: 4, ahead: false });
    // Only those not back yet: with 3 of the 4 back, the last one still saves a run's fixed 10 ms; with all 4
    // back, nobody is waited for.
    expect(decideSlo(input({ ...closed, returnedRows: 3 }))).toEqual({ kind: 'wait', untilNs: at(9) });
    expect(decideSlo(input({ ...closed, returnedRows: 4 }))).toEqual({ kind: 'cut', count: 4, ahead: false });
    // The saving is the instance's compute. A compute of 2 ms a row and no fixed part saves nothing.
    expect(decideSlo(input({ ...closed, compute: (rows) => 2e6 * rows }))).toEqual({ kind: 'cut', count: 4, ahead: false });
    // The way to the worker and back (cost − compute) counts against it: merged, no other half's run overlaps it.
    // 2 ms to come back and 7 ms of it are within the 10 ms saved; 9 ms are not.
    expect(decideSlo(input({ ...closed, cost: (rows) => table(rows) + 7e6, compute: table }))).toEqual({ kind: 'wait', untilNs: at(9) });
    expect(decideSlo(input({ ...closed, cost: (rows) => table(rows) + 9e6, compute: table }))).toEqual({ kind: 'cut', count: 4, ahead: false });
  });
  it('waits for a burst coming in to end, even once the answered batch\'s wait has passed', () => {
    const burst = { ...closed, answeredNs: at(-30), lastArrivalNs: at(0) - 100_000n };
    expect(decideSlo(input(burst))).toEqual({ kind: 'wait', untilNs: at(0) - 100_000n + BigInt(QUIET_GAPS * 0.1e6) });
  });
  it('does not wait in an open loop (no burst), while tenants share the model, or past what every member\'s deadline allows', () => {
    // Poisson-like: recent gaps about the mean (and the rate's gap, 5 ms).
    expect(decideSlo(input({ ...closed, recentGapNs: 4e6 }))).toEqual({ kind: 'cut', count: 4, ahead: false });
    // Tenants share the model: another tenant's request would wait too.
    expect(decideSlo(input({ ...closed, shared: true }))).toEqual({ kind: 'cut', count: 4, ahead: false });
    // Against a mean gap that has forgotten the silences (a burst as long as its memory), the rate's gap still tells.
    expect(decideSlo(input({ ...closed, meanGapNs: 0.2e6 }))).toEqual({ kind: 'wait', untilNs: at(9) });
    expect(decideSlo(input({ ...closed, meanGapNs: 0.2e6, arrivalRowsPerNs: 5 / 1e6 }))).toEqual({ kind: 'cut', count: 4, ahead: false });
    // The first is due at 30 ms: a full batch (26 ms) must start by 4 ms.
    expect(decideSlo(input({ ...closed, queued: [req(30), ...four.slice(1)] }))).toEqual({ kind: 'wait', untilNs: at(4) });
    // Due at 20 ms: no time to wait for anyone; cut.
    expect(decideSlo(input({ ...closed, queued: [req(20), ...four.slice(1)] }))).toEqual({ kind: 'cut', count: 4, ahead: false });
  });
  it('does not send ahead into the busy instance a batch that fits in one with the batch running: holds for it to free', () => {
    // The instance ends its compute at 5 ms with 4 rows; the dispatch time (2 ms) has come.
    const busy = { ...closed, idle: false, busyUntilNs: at(5), dispatchNs: 2e6, now: at(4), runningRows: 4, answeredNs: at(-30) };
    expect(decideSlo(input(busy))).toEqual({ kind: 'hold' });
    // The two would not fit in one batch, or nothing is known to run: sent ahead as ever.
    expect(decideSlo(input({ ...busy, runningRows: 5 }))).toEqual({ kind: 'cut', count: 4, ahead: true });
    expect(decideSlo(input({ ...busy, runningRows: 0 }))).toEqual({ kind: 'cut', count: 4, ahead: true });
    // An open loop: sent ahead, so the instance never idles.
    expect(decideSlo(input({ ...busy, recentGapNs: 4e6 }))).toEqual({ kind: 'cut', count: 4, ahead: true });
    // The first member is due at 40 ms: after the instance frees at 5 ms, a full batch (26 ms) fits, not the wait for
    // the callers as well (5 + 10 + 26); the wait is cut to the deadline's, so it still holds. Due at 30 ms it cannot
    // wait at all: sent ahead.
    expect(decideSlo(input({ ...busy, queued: [req(40), ...four.slice(1)] }))).toEqual({ kind: 'hold' });
    expect(decideSlo(input({ ...busy, queued: [req(30), ...four.slice(1)] }))).toEqual({ kind: 'cut', count: 4, ahead: true });
  });
});

describe('newcomerRows', () => {
  it('is the largest batch a newcomer can wait out and still be served within the budget in the next', () => {
    // GPU-like: 1 ms + 0.1 ms a row of compute, 10.05 ms more from cut to answer. Waiting out n rows and riding
    // in the next n: 12.05 + 0.2 n ms. Twice a row alone (2 × 11.15 ms) allows 51 rows; a 14 ms budget 9.
    const compute = (rows: number): number => (1 + 0.1 * rows) * 1e6;
    const cost = (rows: number): number => compute(rows) + 10.05e6;
    expect(newcomerRows(64, 100e6, compute, cost)).toBe(51);
    expect(newcomerRows(64, 14e6, compute, cost)).toBe(9);
    expect(newcomerRows(8, 100e6, compute, cost)).toBe(8);
  });

  it('keeps a newcomer within SHARED_LATENCY_FACTOR times a row alone: on CPU, where rows cost what they cost alone, a row', () => {
    // ResNet-18 on CPU, flat per row: 1 row (22 ms for two) is the only size within twice 11 ms, whatever the budget.
    const flat = (rows: number): number => 11e6 * rows;
    expect(SHARED_LATENCY_FACTOR).toBe(2);
    expect(newcomerRows(16, 200e6, flat, flat)).toBe(1);
    // 10 ms + 2 ms a row: 1 row fits, but does under half the 8 rows' throughput: 3 rows, the floor.
    expect(newcomerRows(8, 100e6, table, table)).toBe(3);
  });

  it('never costs the batches more than half their throughput, and is the efficient size while cold', () => {
    // 8 rows: 0.31 rows/ms; half is 0.15: 3 rows do 0.19, 2 rows 0.14. A budget nothing fits stops at 3.
    expect(newcomerRows(8, 10e6, table, table)).toBe(3);
    expect(newcomerRows(8, 10e6, () => undefined, () => undefined)).toBe(8);
  });
});
