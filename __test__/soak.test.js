'use strict'
// The soak (scripts/soak.js) in CI: time-compressed for 60 seconds (tens of thousands of
// checks under the whole fault schedule), a small crash loop (durable-crash.test.js runs the
// 200-kill one) and the crash-during-recovery check; then the invariants of its figures.
// The full soak is `npm run soak` (see scripts/soak.js for the modes).
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { unmatchedRecoveries } = require('../scripts/soak/crash')
const { linearFit, budgetWindows, overlaps, processHeapFromMetrics, summarizeSamples } = require('../scripts/soak/stats')

const SOAK = path.join(__dirname, '../scripts/soak.js')
const SECONDS = Number(process.env.HPC_HEALTH_SOAK_SECONDS || 60)
const KILLS = 20

function runSoak(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SOAK, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { err += d })
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, out, err }))
  })
}

test('the soak helpers: unmatched recoveries, fits, budget windows, overlaps', () => {
  const records = [
    { seq: 1, kind: 'recovery_started', details: { id: 'memory-1-1', type: 'memory', started_at: 1 } },
    { seq: 2, kind: 'recovery_finished', details: { id: 'memory-1-1', result: 'recovered' } },
    { seq: 3, kind: 'recovery_started', details: { id: 'device_lost-2-2', type: 'device_lost', started_at: 2 } },
    { seq: 4, kind: 'health_unhealthy', details: {} },
  ]
  assert.deepEqual(unmatchedRecoveries(records).map((r) => r.details.id), ['device_lost-2-2'])
  assert.deepEqual(unmatchedRecoveries([]), [])

  const fit = linearFit([0, 1, 2, 3], [10, 12, 14, 16])
  assert.equal(fit.slope, 2)
  assert.equal(fit.intercept, 10)
  assert.equal(linearFit([1], [1]).slope, null)

  // 3 per 1000 ms: four takes inside one window break it; spaced ones do not.
  assert.equal(budgetWindows([0, 100, 200, 300], 3, 1000).violations.length, 1)
  const held = budgetWindows([0, 100, 200, 1000, 1100, 1200, 2000], 3, 1000)
  assert.deepEqual(held.violations, [])
  assert.equal(held.min_span_of_max_plus_one_ms, 1000)

  assert.deepEqual(overlaps([{ id: 'a', start: 0, end: 10 }, { id: 'b', start: 10, end: 20 }]), [])
  assert.deepEqual(overlaps([{ id: 'a', start: 0, end: 10 }, { id: 'b', start: 5, end: 20 }]), [{ first: 'a', second: 'b', by_ms: 5 }])

  const hour = 3600000
  const samples = Array.from({ length: 100 }, (_, i) => ({ t: i * hour / 100, rss: (50 + i * 0.01) * 1048576, heapUsed: 0, fds: 20, threads: 10 }))
  const summary = summarizeSamples(samples, { warmupShare: 0.25 })
  assert.ok(Math.abs(summary.rss_slope_mib_per_h - 1) < 1e-6, `slope ${summary.rss_slope_mib_per_h}`)
  assert.equal(summary.fds.spread, 0)
  // Stopping the service closes its descriptors (the kernel pressure watch): the sample after
  // the stop is no change in the flatness, and it is still the end.
  const stopped = [...samples, { ...samples.at(-1), t: samples.at(-1).t + 1000, fds: 14 }]
  const whileRunning = summarizeSamples(stopped, { warmupShare: 0.25, runningUntil: samples.at(-1).t })
  assert.deepEqual([whileRunning.fds.spread, whileRunning.fds.end], [0, 14])
  assert.equal(summarizeSamples(stopped, { warmupShare: 0.25 }).fds.spread, 6)

  // Memory holding data is anonymous RSS less V8's free heap: RSS that grows only by heap V8
  // keeps free is not held data; native memory that grows is.
  const MiB = 1048576
  const split = (anon, heapTotal, heapUsed) => Array.from({ length: 100 }, (_, i) => ({ t: i * hour / 100, rss: (anon(i) + 40) * MiB, rssAnon: anon(i) * MiB, rssFile: 40 * MiB, heapTotal: heapTotal(i) * MiB, heapUsed: heapUsed(i) * MiB, fds: 20, threads: 10 }))
  const slack = summarizeSamples(split((i) => 20 + i * 0.02, (i) => 8 + i * 0.02, () => 4), { warmupShare: 0.25 })
  assert.ok(Math.abs(slack.rss_slope_mib_per_h - 2) < 1e-6, `rss slope ${slack.rss_slope_mib_per_h}`)
  assert.ok(Math.abs(slack.held_slope_mib_per_h) < 1e-6, `held slope ${slack.held_slope_mib_per_h}`)
  assert.equal(slack.file_backed_growth_after_warmup_mib, 0)
  const leak = summarizeSamples(split((i) => 20 + i * 0.03, () => 8, (i) => 4 + i * 0.01), { warmupShare: 0.25 })
  assert.ok(Math.abs(leak.held_slope_mib_per_h - 4) < 1e-6, `held slope ${leak.held_slope_mib_per_h}`)
  // Warm-up is a quarter of the run capped at 10 minutes: the first sample after it is the 17th.
  assert.ok(Math.abs(leak.held_after_warmup_mib - (20 + 17 * 0.03 - (8 - (4 + 17 * 0.01)))) < 1e-6, `${leak.held_after_warmup_mib}`)
  // Without RssAnon (not Linux) there is no split.
  assert.equal(summary.held_slope_mib_per_h, null)

  // Where the C allocator counts its live bytes, memory holding data is those plus V8's live
  // objects: memory the allocator keeps free (anonymous RSS rising, in-use flat) is not held,
  // and a native leak (in-use rising) is, whatever RSS does.
  const withAllocator = (inUse, free) => split((i) => 20 + (inUse(i) - 12) + (free(i) - 2), () => 8, () => 4).map((sample, i) => ({ ...sample, mallocInUse: inUse(i) * MiB, mallocFree: free(i) * MiB }))
  const retained = summarizeSamples(withAllocator(() => 12, (i) => 2 + i * 0.03), { warmupShare: 0.25 })
  assert.equal(retained.held_source, 'allocator')
  assert.ok(Math.abs(retained.held_slope_mib_per_h) < 1e-6, `held slope ${retained.held_slope_mib_per_h}`)
  assert.ok(Math.abs(retained.anon_held_slope_mib_per_h - 3) < 1e-6, `anonymous estimate ${retained.anon_held_slope_mib_per_h}`)
  assert.ok(Math.abs(retained.malloc_free_slope_mib_per_h - 3) < 1e-6, `free slope ${retained.malloc_free_slope_mib_per_h}`)
  const nativeLeak = summarizeSamples(withAllocator((i) => 12 + i * 0.02, () => 2), { warmupShare: 0.25 })
  assert.ok(Math.abs(nativeLeak.held_slope_mib_per_h - 2) < 1e-6, `held slope ${nativeLeak.held_slope_mib_per_h}`)
  assert.equal(leak.held_source, 'anonymous_rss')
  assert.deepEqual(processHeapFromMetrics('hpc_health_process_heap_bytes{state="in_use"} 4096\nhpc_health_process_heap_bytes{state="free"} 512\n'), { inUse: 4096, free: 512 })
  assert.equal(processHeapFromMetrics('hpc_health_healthy 1\n'), null)
})

test(`soak: ${SECONDS} s time-compressed under the fault schedule, ${KILLS} crash kills, crash during recovery`, { timeout: (SECONDS + 150) * 1000 }, async () => {
  const { code, signal, out, err } = await runSoak(['--compressed', '--seconds', String(SECONDS), '--crash-kills', String(KILLS), '--json'])
  const report = `\n--- soak stderr (tail) ---\n${err.slice(-6000)}`
  assert.equal(signal, null, `the soak was killed by ${signal}${report}`)
  let f
  try {
    f = JSON.parse(out)
  } catch (e) {
    assert.fail(`the soak printed no JSON (exit ${code}): ${e.message}${report}`)
  }
  assert.deepEqual(f.failures, [], `the soak's own assertions failed${report}`)
  assert.equal(code, 0, `exit ${code}${report}`)
  assert.equal(f.ok, true)

  // It ran the loop as asked, and lived.
  assert.equal(f.mode, 'compressed')
  assert.equal(f.config.intervalMs, 1)
  assert.ok(f.loop_s >= SECONDS * 0.95, `the loop ran ${f.loop_s} s`)
  assert.ok(f.checks >= SECONDS * 100, `${f.checks} checks in ${f.loop_s} s`)
  assert.equal(f.recorder.checks_seen, f.checks, "a 'health' event for every check")
  assert.equal(f.check_failures, 0)
  assert.equal(f.uncaught, 0)
  assert.equal(f.interrupted, null)

  // The pace, and no stall.
  assert.ok(f.pace.achieved_per_s >= f.pace.interval_per_s / f.pace.factor_allowed, `${f.pace.achieved_per_s} checks/s`)
  assert.ok(f.pace.achieved_per_s <= f.pace.interval_per_s * 1.05)
  assert.deepEqual(f.recorder.gap_violations, [])
  assert.ok(f.recorder.max_unexplained_gap_ms <= f.config.gapLimitMs)

  // Every kind of fault was injected and every one gave its incident and recovery.
  assert.ok(f.faults.cycles >= 2, `${f.faults.cycles} cycles`)
  for (const [kind, c] of Object.entries(f.faults.by_kind)) {
    assert.ok(c.injected >= 1, `${kind} never injected`)
    assert.equal(c.failed, 0, `${kind}: ${c.failed} failed`)
    assert.equal(c.verified + c.aborted, c.injected, `${kind}: ${JSON.stringify(c)}`)
  }
  assert.deepEqual(f.faults.failures, [])
  const incidents = f.recorder.incidents_by_kind
  for (const kind of ['health_unhealthy', 'health_recovered', 'operator_action_required', 'checkpoint_failed', 'recovery_budget_exhausted']) {
    assert.ok(incidents[kind] > 0, `no ${kind} incident: ${JSON.stringify(incidents)}`)
  }
  assert.equal(incidents.monitoring_error, undefined)
  const recoveries = f.recorder.recoveries_by_type_result
  for (const key of ['pause_intake/paused', 'memory/recovered', 'memory/failed', 'out_of_memory/recovered', 'device_lost/recovered', 'operator/paused', 'process/recovered']) {
    assert.ok(recoveries[key] > 0, `no ${key} recovery: ${JSON.stringify(recoveries)}`)
  }
  assert.equal(f.hook_calls.emergencyCleanup, recoveries['memory/failed'], 'emergencyCleanup ran once per failed memory recovery')

  // Recoveries never overlapped; the budget held.
  assert.deepEqual(f.recorder.runs.overlaps, [])
  assert.deepEqual(f.incident_log.overlaps, [])
  assert.ok(f.recorder.runs.seen > 0 && f.incident_log.runs > 0)
  assert.deepEqual(f.recorder.budget.violations, [])
  assert.ok(f.recorder.budget.min_span_of_max_plus_one_ms === null || f.recorder.budget.min_span_of_max_plus_one_ms >= f.config.budgetWindowMs - f.config.budgetToleranceMs)
  assert.deepEqual(f.incident_log.unmatched_recovery_started, [], 'a clean stop leaves every recovery finished')

  // The full disk: checkpoints failed while it lasted and resumed after.
  assert.ok(['tmpfs', 'maxBytes'].includes(f.checkpoints.disk_method))
  assert.ok(f.recorder.errors_by_kind.checkpoint > 0)
  assert.ok(f.checkpoints.listed >= 2)
  assert.equal(f.workload.active_operations_at_end, 0)
  assert.deepEqual(f.workload.unexpected_failures, [])

  // Flat after warm-up.
  const s = f.samples
  assert.ok(s.samples_after_warmup >= 10, `${s.samples_after_warmup} samples after warm-up`)
  assert.ok(s.fds.spread <= 4, `fds ${s.fds.min}-${s.fds.max}`)
  assert.ok(s.threads.spread <= 8, `threads ${s.threads.min}-${s.threads.max}`)
  assert.ok(s.rss_growth_after_warmup_mib <= 4, `RSS grew ${s.rss_growth_after_warmup_mib} MiB after warm-up`)

  // Crashes.
  assert.equal(f.crash.kills, KILLS)
  assert.deepEqual(f.crash.failures, [])
  assert.ok(f.crash.checkpoints_acknowledged > 0)
  const cr = f.crash_recovery
  assert.deepEqual(cr.failures, [])
  assert.equal(cr.killed_mid_recovery, cr.rounds)
  assert.equal(cr.unmatched.length, cr.rounds, 'each run killed mid-recovery shows as started and never finished')
  assert.equal(cr.finished_controls, cr.rounds)
  for (const u of cr.unmatched) assert.match(u.id, /^memory-\d+-\d+$/)
  assert.equal(cr.unmatched_lines.length, cr.rounds)
  assert.match(err, /unmatched recovery_started: seq \d+, id memory-/, 'the unmatched records are printed')
  assert.match(err, /\| checks \| /, 'the table is printed')
})
