'use strict'
// Figures of a soak: process samples (RSS, open descriptors, threads), a least-squares
// slope, the recovery budget over sliding windows, and overlaps between recovery runs.
const fs = require('node:fs')
const v8 = require('node:v8')

const MiB = 1024 * 1024

/** Open file descriptors of this process (the listing's own descriptor included, always one). */
function openFds() {
  return fs.readdirSync('/proc/self/fd').length
}

/**
 * From /proc/self/status: threads, and RSS split into anonymous memory (heaps: V8's, malloc's)
 * and file-backed pages (the code of node and of the loaded libraries, which the kernel maps
 * in as code first runs and may drop again; they are not allocations). Null where absent.
 */
function readProcStatus() {
  const text = fs.readFileSync('/proc/self/status', 'utf8')
  const field = (name, scale) => {
    const match = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)
    return match ? Number(match[1]) * scale : null
  }
  return { threads: field('Threads', 1), rssAnon: field('RssAnon', 1024), rssFile: field('RssFile', 1024) }
}

/**
 * What one sample holds: ms since epoch, bytes, and counts. `newSpace`, `rssAnon`, `rssFile`
 * and `threads` are null where the process cannot tell; `mallocInUse` and `mallocFree` (the C
 * allocator's own count of bytes in live allocations and kept free) where it cannot tell or no
 * reader was given.
 */
const SAMPLE_FIELDS = ['t', 'rss', 'heapUsed', 'heapTotal', 'newSpace', 'external', 'rssAnon', 'rssFile', 'mallocInUse', 'mallocFree', 'fds', 'threads']

/**
 * The process heap from a `metrics()` exposition (`hpc_health_process_heap_bytes{state}`):
 * `{ inUse, free }` in bytes, or null where it is not exposed (not glibc).
 */
function processHeapFromMetrics(text) {
  const value = (state) => {
    const match = new RegExp(`^hpc_health_process_heap_bytes\\{state="${state}"\\} (\\S+)$`, 'm').exec(text)
    return match ? Number(match[1]) : null
  }
  const inUse = value('in_use')
  const free = value('free')
  return inUse === null || free === null ? null : { inUse, free }
}

/** One sample (see `SAMPLE_FIELDS`); `processHeap` returns `{ inUse, free }` or null. */
function sampleProcess(processHeap = () => null) {
  const memory = process.memoryUsage()
  const status = readProcStatus()
  // V8 sizes its young generation by the allocation rate it sees: part of heapTotal that is
  // V8's choice, not data kept.
  const newSpace = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')
  const heap = processHeap()
  return { t: Date.now(), rss: memory.rss, heapUsed: memory.heapUsed, heapTotal: memory.heapTotal, newSpace: newSpace ? newSpace.space_size : null, external: memory.external, rssAnon: status.rssAnon, rssFile: status.rssFile, mallocInUse: heap ? heap.inUse : null, mallocFree: heap ? heap.free : null, fds: openFds(), threads: status.threads }
}

/** The samples as CSV, one row a sample (bytes and ms since epoch), for plotting. */
function samplesCsv(samples) {
  const row = (s) => SAMPLE_FIELDS.map((k) => (s[k] === null || s[k] === undefined ? '' : s[k])).join(',')
  return [SAMPLE_FIELDS.join(','), ...samples.map(row)].join('\n') + '\n'
}

/** Least-squares fit of `ys` over `xs`: `{ slope, intercept, n }` (slope null under 2 points). */
function linearFit(xs, ys) {
  const n = xs.length
  if (n < 2) return { slope: null, intercept: null, n }
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let sxy = 0
  let sxx = 0
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my)
    sxx += (xs[i] - mx) ** 2
  }
  if (sxx === 0) return { slope: null, intercept: null, n }
  const slope = sxy / sxx
  return { slope, intercept: my - slope * mx, n }
}

/**
 * The samples after warm-up (the first `warmupShare` of the run, at most `warmupCapMs`, and
 * at least until `warmupUntil`) and what they say: slopes in MiB per hour of RSS, of its parts
 * and of memory holding data; growth after warm-up; the spread (max - min) of fds and threads
 * while the service ran (until `runningUntil`: stopping it closes what it held, which is no
 * change to flag; `end` is the last sample, after the stop when one was taken then).
 */
function summarizeSamples(samples, { warmupShare = 0.25, warmupCapMs = 10 * 60 * 1000, warmupUntil = null, runningUntil = null } = {}) {
  if (samples.length === 0) return null
  const t0 = samples[0].t
  const span = samples[samples.length - 1].t - t0
  // Warm-up lasts a share of the run (capped), and at least until `warmupUntil` (when the
  // schedule had been through every kind of fault once: threads and arenas started).
  const warmupMs = Math.min(Math.max(Math.min(warmupCapMs, span * warmupShare), warmupUntil === null ? 0 : warmupUntil - t0), span)
  const after = samples.filter((s) => s.t - t0 >= warmupMs)
  const slope = (list, of = (s) => s.rss) => linearFit(list.map((s) => (s.t - t0) / 3600000), list.map((s) => of(s) / MiB)).slope
  const rssSlope = slope(after)
  const spanAfterMs = after.length ? after[after.length - 1].t - after[0].t : 0
  // The slopes of the two halves of what follows warm-up: a slope that falls is growth
  // levelling off.
  const half = Math.floor(after.length / 2)
  const halfSlopes = (of) => (half >= 2 ? [slope(after.slice(0, half), of), slope(after.slice(half), of)] : [null, null])
  // Fields a sample may lack (null where the process cannot tell, absent in older samples).
  const known = (...keys) => after.length > 0 && after.every((s) => keys.every((k) => Number.isFinite(s[k])))
  const slopeIfKnown = (keys, of) => (known(...keys) ? slope(after, of) : null)
  // Memory holding data, exactly where the C allocator counts its live bytes: those plus V8's
  // live objects (V8 maps its heap itself, outside malloc). Without that count, anonymous RSS
  // less V8's free heap, which also counts what the allocator keeps free in its arenas: that
  // rises and falls by megabytes as it chooses when to return memory, with nothing leaking.
  const anonHeld = (s) => s.rssAnon - (s.heapTotal - s.heapUsed)
  const withAllocator = known('mallocInUse', 'heapUsed')
  const withAnon = known('rssAnon', 'heapTotal', 'heapUsed')
  const held = withAllocator ? (s) => s.mallocInUse + s.heapUsed : anonHeld
  const withHeld = withAllocator || withAnon
  const [rssFirstHalf, rssSecondHalf] = halfSlopes((s) => s.rss)
  const [heldFirstHalf, heldSecondHalf] = withHeld ? halfSlopes(held) : [null, null]
  const stride = Math.max(1, Math.ceil(samples.length / 300))
  const spread = (key) => {
    const running = runningUntil === null ? after : after.filter((s) => s.t <= runningUntil)
    const values = running.map((s) => s[key]).filter(Number.isFinite)
    return values.length ? { min: Math.min(...values), max: Math.max(...values), spread: Math.max(...values) - Math.min(...values) } : null
  }
  return {
    samples: samples.length,
    samples_after_warmup: after.length,
    warmup_s: warmupMs / 1000,
    span_after_warmup_s: spanAfterMs / 1000,
    rss_start_mib: samples[0].rss / MiB,
    rss_after_warmup_mib: after.length ? after[0].rss / MiB : null,
    rss_end_mib: samples[samples.length - 1].rss / MiB,
    rss_max_mib: Math.max(...samples.map((s) => s.rss)) / MiB,
    rss_slope_mib_per_h: rssSlope,
    rss_slope_first_half_mib_per_h: rssFirstHalf,
    rss_slope_second_half_mib_per_h: rssSecondHalf,
    // RSS's growth as its fit gives it (RSS's noise, ±1.5 MiB, would dwarf a last-minus-first).
    rss_growth_after_warmup_mib: (rssSlope || 0) * (spanAfterMs / 3600000),
    heap_end_mib: samples[samples.length - 1].heapUsed / MiB,
    // RSS = V8's heap (its committed size, which V8 grows and shrinks itself) + the rest
    // (native memory: this package, Node, libuv). A leak of ours shows in the rest.
    heap_total_slope_mib_per_h: slope(after, (s) => s.heapTotal),
    // Of V8's heap size: what live JavaScript objects use after a full collection, and the
    // young generation's size.
    heap_used_slope_mib_per_h: slope(after, (s) => s.heapUsed),
    new_space_slope_mib_per_h: slopeIfKnown(['newSpace'], (s) => s.newSpace),
    outside_v8_heap_slope_mib_per_h: slope(after, (s) => s.rss - s.heapTotal),
    // The rest, split: anonymous memory outside V8's heap (malloc: this package, Node, libuv)
    // and file-backed pages (code paged in). Null where /proc/self/status lacks the fields.
    anon_outside_v8_heap_slope_mib_per_h: slopeIfKnown(['rssAnon', 'heapTotal'], (s) => s.rssAnon - s.heapTotal),
    file_backed_slope_mib_per_h: slopeIfKnown(['rssFile'], (s) => s.rssFile),
    // Memory that can hold data: anonymous RSS less the free space in V8's heap (heapTotal -
    // heapUsed, measured right after a full collection, young generation included). What is
    // left is native allocations and V8's live objects: where a leak accumulates. Left out:
    // file-backed pages (code paged in as it first runs, bounded by the code loaded) and heap
    // pages V8 keeps committed for its own sizing.
    held_source: withAllocator ? 'allocator' : withAnon ? 'anonymous_rss' : null,
    held_slope_mib_per_h: withHeld ? slope(after, held) : null,
    // The estimate from anonymous RSS beside the allocator's count, and what the allocator
    // keeps free: together they show where RSS went.
    anon_held_slope_mib_per_h: withAnon ? slope(after, anonHeld) : null,
    malloc_free_slope_mib_per_h: slopeIfKnown(['mallocFree'], (s) => s.mallocFree),
    held_slope_first_half_mib_per_h: heldFirstHalf,
    held_slope_second_half_mib_per_h: heldSecondHalf,
    held_after_warmup_mib: withHeld ? held(after[0]) / MiB : null,
    held_end_mib: withHeld ? held(after[after.length - 1]) / MiB : null,
    // The highest seen less the first: pages paged in and dropped again still count.
    file_backed_growth_after_warmup_mib: known('rssFile') ? (Math.max(...after.map((s) => s.rssFile)) - after[0].rssFile) / MiB : null,
    external_end_mib: (samples[samples.length - 1].external || 0) / MiB,
    rss_series: samples.filter((_, i) => i % stride === 0 || i === samples.length - 1).map((s) => [Math.round((s.t - t0) / 1000), Math.round((s.rss / MiB) * 100) / 100]),
    fds: { start: samples[0].fds, end: samples[samples.length - 1].fds, ...spread('fds') },
    threads: { start: samples[0].threads, end: samples[samples.length - 1].threads, ...spread('threads') },
  }
}

/**
 * The budget over sliding windows: `takes` are the times (ms) recoveries took from it. A
 * violation is `max + 1` takes within `windowMs - toleranceMs`. Returns the shortest span
 * of `max + 1` consecutive takes (null when there were never that many) and violations.
 */
function budgetWindows(takes, max, windowMs, toleranceMs = 0) {
  const sorted = [...takes].sort((a, b) => a - b)
  let minSpan = null
  const violations = []
  for (let i = 0; i + max < sorted.length; i++) {
    const span = sorted[i + max] - sorted[i]
    if (minSpan === null || span < minSpan) minSpan = span
    if (span < windowMs - toleranceMs) violations.push({ from: sorted[i], to: sorted[i + max], count: max + 1, span_ms: span })
  }
  return { takes: sorted.length, min_span_of_max_plus_one_ms: minSpan, violations }
}

/** Pairs of `[{ id, start, end }]` intervals that overlap (touching ends do not). */
function overlaps(intervals) {
  const sorted = [...intervals].sort((a, b) => a.start - b.start)
  const found = []
  let latest = null
  for (const interval of sorted) {
    if (latest && interval.start < latest.end) found.push({ first: latest.id, second: interval.id, by_ms: latest.end - interval.start })
    if (!latest || interval.end > latest.end) latest = interval
  }
  return found
}

module.exports = { MiB, SAMPLE_FIELDS, openFds, processHeapFromMetrics, sampleProcess, samplesCsv, linearFit, summarizeSamples, budgetWindows, overlaps }
