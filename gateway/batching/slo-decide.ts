// SLO-aware batch formation, the decision alone (pure: no timers, no I/O).
// The batcher applies it when `batching_slo_ms` (or --batching-slo-ms) is
// set (dynamic-batcher.ts). Given the head of the queue, the instances and the cost
// model, it chooses the action that serves the most requests within their
// deadlines: cut now, wait for more rows, or send ahead into a busy instance.

/** What the decision needs of one queued request, in the order it would be served. */
export interface SloEntry {
  readonly rows: number;
  /** Its deadline on the decision's clock; undefined = now + the model's SLO. */
  readonly deadlineNs: bigint | undefined;
}

export interface SloInput {
  readonly now: bigint;
  readonly queued: readonly SloEntry[];
  readonly maxBatch: number;
  /**
   * max_batch_size, when larger than maxBatch (the efficient size): a batch
   * already queued past the efficient size is cut up to it while every
   * member still finishes in time (see backlogCount). A backlog served in
   * larger batches serves more rows per second; nobody waits for rows
   * still to come.
   */
  readonly largestBatch?: number;
  /** The model's SLO: the deadline of requests that bring none. */
  readonly sloNs: bigint;
  /**
   * Tenants share the model: nothing is sent ahead into a busy instance;
   * each batch is cut as an instance frees. A batch sent ahead is fixed a
   * whole run before it starts (longer when runs overrun their estimate on
   * a busy machine), and a request of another tenant arriving meanwhile
   * waits for the run after it: a run of its latency, where holding costs
   * the instance one round trip to the gateway per batch.
   */
  readonly shared?: boolean;
  /** An instance is idle now. */
  readonly idle: boolean;
  /** Without an idle instance: when the first busy one is expected to end its compute; undefined = unknown. */
  readonly busyUntilNs: bigint | undefined;
  /**
   * How long a batch takes to reach an instance once cut (transport to the
   * worker); 0 when unknown. A batch sent ahead this long before the busy
   * instance ends its compute starts as it frees, so the instance never
   * idles between batches; waiting longer would leave it idle.
   */
  readonly dispatchNs?: number;
  /** Expected ns of one execution of `rows` rows, from cut to answer; undefined = cold. */
  readonly cost: (rows: number) => number | undefined;
  /**
   * Expected ns the instance computes `rows` rows: how long it is occupied
   * (the transport before and after overlaps other batches). Whether a
   * batch keeps up with arrivals is judged on it. Default: `cost`.
   */
  readonly compute?: (rows: number) => number | undefined;
  /** Rows arriving per ns, recently; 0 = none expected. */
  readonly arrivalRowsPerNs: number;
  /**
   * When the last row arrived; undefined = not known (the quiet rule is off).
   * A rate is a recent average: once no row came for QUIET_GAPS expected
   * gaps, arrivals have stopped (a closed loop whose callers all wait in
   * this batch), and waiting longer would only hold the batch back.
   */
  readonly lastArrivalNs?: bigint | undefined;
  /** The median gap per row among the last arrivals (ArrivalRate.recentGapNs); undefined = unknown. */
  readonly recentGapNs?: number | undefined;
  /** The mean gap per row over more arrivals, silences included (ArrivalRate.meanGapNs); undefined = unknown. */
  readonly meanGapNs?: number | undefined;
  /** When the last batch was answered, and its rows: callers in a closed loop send again (returnWait). */
  readonly answeredNs?: bigint | undefined;
  readonly answeredRows?: number;
  /** Rows that arrived since then: the callers come back. */
  readonly returnedRows?: number;
  /**
   * How long, lately, as many rows as a batch answered took to arrive after
   * its answer (ReturnTime); undefined = not seen. A closed loop's callers
   * come back within a round trip; open-loop arrivals take as long as the
   * arrival rate needs, about a batch's compute near capacity.
   */
  readonly returnNs?: number | undefined;
  /** Rows in batches sent and not yet answered. */
  readonly runningRows?: number;
}

/** Expected gaps without an arrival after which an idle instance stops waiting (Poisson: 5 % chance of a false stop). */
export const QUIET_GAPS = 3;

/**
 * Rows arrive in a burst when the recent gaps between them are at most this
 * share of the mean gap. Poisson arrivals' median gap is 0.69 of their mean;
 * the median of 8 falls to a third of it in 7.5 % of draws (simulated), and
 * then costs a wait of three such short gaps, never more than the batch's
 * own run.
 */
export const BURST_SHARE = 1 / 3;

export type SloDecision =
  | { readonly kind: 'idle' }
  /** Cut the first `count` entries now, onto an idle instance (`ahead`: into a busy one's queue). */
  | { readonly kind: 'cut'; readonly count: number; readonly ahead: boolean }
  /** Decide again at `untilNs` (or when something changes). */
  | { readonly kind: 'wait'; readonly untilNs: bigint }
  /** Decide again when an instance frees (no timer: the answer that frees it, or an arrival, wakes the batcher). */
  | { readonly kind: 'hold' };

/** The longest prefix of `queued` that fits one batch: its length and rows. */
function head(queued: readonly SloEntry[], maxBatch: number): { count: number; rows: number } {
  let rows = 0;
  let count = 0;
  for (const e of queued) {
    if (count > 0 && rows + e.rows > maxBatch) break;
    rows += e.rows;
    count++;
  }
  return { count, rows };
}

/** The earliest deadline among the first `count` entries. */
function earliest(input: SloInput, count: number): bigint {
  let d: bigint | undefined;
  for (let i = 0; i < count; i++) {
    const e = input.queued[i] as SloEntry;
    const at = e.deadlineNs ?? input.now + input.sloNs;
    if (d === undefined || at < d) d = at;
  }
  return d ?? input.now + input.sloNs;
}

const ns = (x: number): bigint => BigInt(Math.ceil(x));

/**
 * The fewest rows (more than `rows`, at most maxBatch) whose batch keeps up
 * with arrivals: no more rows arrive during its run than it holds; maxBatch
 * when none does. Time per row falls as batches grow (a run's fixed cost is
 * shared), so the first size that keeps up is found by bisection.
 */
function keepUpRows(input: SloInput, rows: number): number {
  const keepsUp = (n: number): boolean => {
    const c = (input.compute ?? input.cost)(n);
    return c !== undefined && input.arrivalRowsPerNs * c <= n;
  };
  let lo = rows;
  let hi = input.maxBatch;
  if (!keepsUp(hi)) return hi;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (keepsUp(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * A full batch's entries, grown by the queued entries after it up to
 * largestBatch rows while the batch, run as one from when it can start,
 * still ends by every member's deadline, and a request arriving just after
 * it is cut could still be served within the SLO behind it (the wait for
 * the busy instance it is sent ahead to, its run, and a full batch's).
 * Past that a larger batch buys the backlog throughput with
 * the deadlines of whoever comes next: a latency-sensitive tenant's request
 * behind a flooding one's batch.
 */
function backlogCount(input: SloInput, count: number, rows: number): number {
  const largest = input.largestBatch ?? input.maxBatch;
  const start = input.idle ? input.now : (input.busyUntilNs ?? input.now);
  const next = input.cost(input.maxBatch);
  if (next === undefined) return count;
  // Sent ahead, the batch starts when the busy instance frees: whoever arrives next waits for that too.
  const behind = (start > input.now ? Number(start - input.now) : 0) + next;
  let best = count;
  let due = earliest(input, count);
  for (let i = count; i < input.queued.length; i++) {
    const e = input.queued[i] as SloEntry;
    if (rows + e.rows > largest) break;
    rows += e.rows;
    const at = e.deadlineNs ?? input.now + input.sloNs;
    if (at < due) due = at;
    const cost = input.cost(rows);
    if (cost === undefined || start + ns(cost) > due || cost + behind > Number(input.sloNs)) break;
    best = i + 1;
  }
  return best;
}

/**
 * A newcomer's deadline may cost the batches of a shared model at most this
 * share of their throughput (rows per second of compute at the efficient size).
 */
export const NEWCOMER_THROUGHPUT_FLOOR = 0.5;

/**
 * While tenants share the model, a newcomer's latency (its wait for the
 * batch running, then its own batch of the same size) is kept within this
 * many times one row's latency alone (`cost(1)`), on top of its deadline:
 * a tenant sending now and then waits for a flood's batches at most as long
 * again as its request alone takes. On a GPU a batch costs little more than
 * a row, and the batches stay large; on CPU a compute-bound model's rows
 * each take about a row's time, and a flood's batches shrink to a row or
 * two, which costs the flood little throughput there. Held to the SLO alone,
 * the busy machine's medians (small batches stalled most under the flood)
 * let them grow to 3-6 rows, and the quiet tenant waited 3× its p99 alone.
 */
export const SHARED_LATENCY_FACTOR = 2;

/**
 * While tenants share the model: the rows of a full batch (at most
 * `efficient`) such that a request of another tenant arriving as the batch
 * starts can wait for it and then be served in the next batch of that size
 * within `budgetNs` (the tightest deadline, from arrival, among requests
 * lately; the model's SLO for those without one) and within
 * SHARED_LATENCY_FACTOR times one row's cost. The largest such size; never
 * one whose throughput falls below NEWCOMER_THROUGHPUT_FLOOR of the
 * efficient size's (a tenant's tight deadlines do not halve everyone's
 * capacity), nor below 1. `efficient` while the cost model is cold.
 */
export function newcomerRows(efficient: number, budgetNs: number, compute: (rows: number) => number | undefined, cost: (rows: number) => number | undefined): number {
  let run = compute(efficient);
  const alone = cost(1);
  if (run === undefined || alone === undefined) return efficient;
  const budget = Math.min(budgetNs, SHARED_LATENCY_FACTOR * alone);
  const floor = NEWCOMER_THROUGHPUT_FLOOR * (efficient / run);
  for (let n = efficient; n > 1; n--) {
    const next = cost(n);
    if (next === undefined || run + next <= budget) return n;
    const smaller = compute(n - 1);
    if (smaller === undefined || (n - 1) / smaller < floor) return n;
    run = smaller;
  }
  return 1;
}

/**
 * While rows come in a burst (recent gaps at most BURST_SHARE of the mean),
 * an idle instance waits for it to end, QUIET_GAPS of its own gaps without
 * a row, if that wait is shorter than the batch's compute (the next rows
 * would otherwise wait a whole run behind it) and every member can still be
 * served in the largest batch after it: a fraction of a ms that puts the
 * whole burst in one batch. undefined: no burst, or no time for it.
 * Without it, the rate (averaged over windows that hold the silences
 * between a closed loop's bursts) said the first rows of each burst kept up
 * on their own: 16 callers on the large MLP were cut into batches of 5.8
 * rows (14.5 with fixed delays) and did 1,101 requests/s against 1,295;
 * waiting for the burst, 13.5-14.1 rows and 1,161-1,404/s against
 * 1,151-1,263/s.
 */
function burstWait(input: SloInput, due: bigint, computeNs: number): SloDecision | undefined {
  const gap = input.recentGapNs;
  const mean = input.meanGapNs;
  if (gap === undefined || mean === undefined || !(gap <= BURST_SHARE * mean)) return undefined;
  const until = burstEnd(input, due, computeNs);
  return until === undefined ? undefined : { kind: 'wait', untilNs: until };
}

/**
 * When a burst coming in ends: QUIET_GAPS of its recent gaps after the last
 * row, if that wait is shorter than the batch's compute and a full batch
 * after it still meets `due`. undefined: passed, or not worth it.
 */
function burstEnd(input: SloInput, due: bigint, computeNs: number): bigint | undefined {
  const gap = input.recentGapNs;
  if (gap === undefined || input.lastArrivalNs === undefined || !(QUIET_GAPS * gap <= computeNs)) return undefined;
  const until = input.lastArrivalNs + ns(QUIET_GAPS * gap);
  const largest = input.cost(input.maxBatch);
  if (until <= input.now || largest === undefined || until + ns(largest) > due) return undefined;
  return until;
}

/**
 * Rows come back in bursts: the recent gaps are at most BURST_SHARE of the
 * mean gap, taken over the longer of the last ~32 gaps and the windowed
 * rate. Once batches hold all of a closed loop's callers, a burst is as
 * long as the mean gap's memory, which then forgets the silence between
 * bursts: 64 callers' gaps of 40–50 µs read as 0.33–0.37 of it.
 * burstWait keeps the mean gap alone: it runs for every idle cut, and a
 * rate decayed between sparse arrivals read any gaps as a burst there (its
 * doc); this wait is further gated on the callers' return time.
 */
function bursty(input: SloInput): boolean {
  const gap = input.recentGapNs;
  const mean = input.meanGapNs;
  if (gap === undefined || mean === undefined) return false;
  const perRate = input.arrivalRowsPerNs > 0 ? 1 / input.arrivalRowsPerNs : 0;
  return gap <= BURST_SHARE * Math.max(mean, perRate);
}

/**
 * Callers in a closed loop (a pool of clients, a load test) send again as
 * their answers come back: rows arrive in bursts after each answer. Cutting
 * what is queued as an instance frees splits the callers in two halves that
 * alternate, each batch running while the other half comes back, at the
 * throughput of half-size batches. Waiting instead for the `notBack`
 * callers of the batch answered at `answeredNs` puts both halves in one
 * run; it pays while their return, and the way to the worker and back
 * (cost − compute: the overhead), take less than the compute it saves the
 * instance, compute(queued) + compute(returning) − compute(both), and then
 * serves them sooner too. The overhead counts because the merged batch
 * holds the callers whose transport the other half's run overlapped: on
 * resnet_small's 600 KB images (an overhead of 19 ms against runs of 13) the
 * wait without it idled the instance through every cycle's transport, and a
 * closed loop of 16 did 255–374 images/s where sending each half ahead did
 * 317–426. Once they come, waits for their burst to end (QUIET_GAPS of
 * its gaps, while that is shorter than the batch's compute, as burstWait).
 * Never past the moment a full batch would make a member miss. undefined:
 * arrivals not in bursts (an open loop, where waiting would only idle the
 * instance), tenants sharing the model, or no time for it. Judged at `now`
 * (the busy instance's end, when deciding whether to hold for it). The MLP
 * 784→2048×4→10 at 64 connections: batches of 27 at 4,113–4,371
 * requests/s with a fixed 2 ms delay, of 50 at 4,459–4,843 with this.
 * Waited for only while callers lately came back within the saving
 * (returnNs): open-loop arrivals near capacity take about a batch's compute.
 */
function returnWait(input: SloInput, rows: number, due: bigint, now: bigint, answeredNs: bigint | undefined, notBack: number): bigint | undefined {
  // Tenants sharing the model: a newcomer's latency comes first (see `shared`); the wait would be its too.
  if (input.shared === true || !bursty(input)) return undefined;
  const costNow = input.cost(rows);
  const largest = input.cost(input.maxBatch);
  if (costNow === undefined || largest === undefined) return undefined;
  const latest = due - ns(largest);
  const compute = input.compute ?? input.cost;
  const computeNow = compute(rows) ?? costNow;
  // A burst coming in: waited out whole or not at all.
  let until = burstEnd(input, due, computeNow);
  // The callers not back yet, as many as fit, when callers lately came back within the compute their joining saves:
  // up to that saving, or as the deadlines allow. Open-loop arrivals near capacity take about a batch's compute to
  // come: waiting for them idled the instance (goodput at 100 % load 0.65× the best fixed delay's, 1.14× before).
  const more = Math.min(notBack, input.maxBatch - rows);
  if (answeredNs !== undefined && more > 0 && input.returnNs !== undefined) {
    const returning = compute(more);
    const both = compute(rows + more);
    const saved = returning === undefined || both === undefined ? 0 : computeNow + returning - both;
    if (saved > 0 && input.returnNs + Math.max(0, costNow - computeNow) <= saved) {
      let end = answeredNs + ns(saved);
      if (end > latest) end = latest;
      if (until === undefined || end > until) until = end;
    }
  }
  return until !== undefined && until > now ? until : undefined;
}

/**
 * - Nothing queued: idle. Cold cost model: cut now (Triton with no delay).
 * - Tenants share the model and no instance is idle: hold until one frees.
 * - A full batch: cut now (ahead into a busy instance if none is idle),
 *   grown past the efficient size up to largestBatch by rows already
 *   queued while every member still finishes in time and a request
 *   arriving next could still be served within the SLO behind it.
 * - An idle instance: cut now when the batch as it is keeps up with
 *   arrivals (fewer rows arrive during its run than it holds), unless rows
 *   are arriving in a burst: then wait for its end (burstWait). Otherwise
 *   wait for more rows, until the batch is expected to reach the smallest
 *   size that keeps up (full when none does), while every member of it
 *   still finishes in time; cut as soon as waiting longer would make one
 *   miss, or nothing more is expected (no row for QUIET_GAPS expected gaps).
 *   Before all that, while rows come back in bursts (a closed loop), wait
 *   for the callers of the batch just answered (returnWait).
 * - No idle instance: send ahead when the batch must start at the first
 *   free instance to finish in time even as it is (growing it would make a
 *   member miss), or when that instance ends its compute within the
 *   dispatch time (it must be sent now to start as the instance frees),
 *   unless rows come back in bursts and this batch fits in one with the
 *   batch running: then hold it for the instance, where it waits for the
 *   running batch's callers; otherwise wait, so it can grow.
 */
export function decideSlo(input: SloInput): SloDecision {
  const { count, rows } = head(input.queued, input.maxBatch);
  if (count === 0) return { kind: 'idle' };
  if (input.shared === true && !input.idle) return { kind: 'hold' };
  const now = input.now;
  const costNow = input.cost(rows);
  if (costNow === undefined) return { kind: 'cut', count, ahead: !input.idle };
  if (rows >= input.maxBatch) {
    return { kind: 'cut', count: backlogCount(input, count, rows), ahead: !input.idle };
  }
  const due = earliest(input, count);
  if (input.idle) {
    const back = returnWait(input, rows, due, now, input.answeredNs, (input.answeredRows ?? 0) - (input.returnedRows ?? 0));
    if (back !== undefined) return { kind: 'wait', untilNs: back };
    // Cut now when batches of this size keep up with arrivals: fewer rows arrive during its run than it holds.
    // Waiting then adds latency and serves no more requests; it pays only when the instance would fall behind.
    const computeNow = (input.compute ?? input.cost)(rows) ?? costNow;
    if (input.arrivalRowsPerNs * computeNow <= rows) return burstWait(input, due, computeNow) ?? { kind: 'cut', count, ahead: false };
    // Wait until the batch is expected to reach the size that keeps up (full when none does), but no
    // later than its members allow for that batch's run. Past that size waiting only adds latency.
    const target = keepUpRows(input, rows);
    const fillNs = (target - rows) / input.arrivalRowsPerNs;
    const targetCost = input.cost(target) ?? costNow;
    const latest = due - ns(targetCost);
    let until = now + ns(fillNs) < latest ? now + ns(fillNs) : latest;
    if (input.lastArrivalNs !== undefined) {
      const quiet = input.lastArrivalNs + ns(QUIET_GAPS / input.arrivalRowsPerNs);
      if (quiet < until) until = quiet;
    }
    return until <= now ? { kind: 'cut', count, ahead: false } : { kind: 'wait', untilNs: until };
  }
  const start = input.busyUntilNs ?? now;
  // Past the moment to dispatch for the instance's next run (the dispatch time before it frees): waiting longer would idle it.
  const dispatchAt = start - ns(input.dispatchNs ?? 0);
  // Callers in a closed loop, and the batch running and this one fit in one: as the instance frees, this one
  // waits there for the running one's callers (returnWait). Sent ahead, each half would run alone.
  const running = input.runningRows ?? 0;
  const merge =
    input.busyUntilNs !== undefined && running > 0 && rows + running <= input.maxBatch && returnWait(input, rows, due, start, start, running) !== undefined;
  if (!merge && input.busyUntilNs !== undefined && now >= dispatchAt) return { kind: 'cut', count, ahead: true };
  // Growing by what arrives until the instance frees, would it still be in time?
  const grown = Math.min(input.maxBatch, rows + Math.floor(input.arrivalRowsPerNs * Number(start > now ? start - now : 0n)));
  const grownCost = input.cost(grown) ?? costNow;
  if (start + ns(grownCost) > due && start + ns(costNow) <= due) return { kind: 'cut', count, ahead: true };
  if (merge) return { kind: 'hold' };
  return { kind: 'wait', untilNs: dispatchAt > now ? dispatchAt : now + 1n };
}
