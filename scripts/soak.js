#!/usr/bin/env node
'use strict'
// The soak: proof of overnight operation. Every part of hpc-health wired as in a real
// service, on eight stand-in GPUs, under a fault schedule (temperature spikes, memory
// waves, hooks that fail or hang, allocator fragmentation, a device lost and returning, Xid
// storms, a full checkpoint disk), with assertions at the end on what must hold after a
// night: the process lived, the loop kept its pace and never stalled, every fault gave its
// incident and recovery, recoveries never overlapped, the budget held, and memory, file
// descriptors and threads stayed flat. Then crashes at scale: a SIGKILL loop against the
// checkpoint writer, and kills in the middle of a recovery.
//
//   node scripts/soak.js [--compressed] [--checks N]  intervalMs 1, 1,000,000 checks by default
//   node scripts/soak.js --hours H [--interval-ms M]  real time, intervalMs 60000 by default
//   options: --seconds S (bound either mode by wall time), --crash-kills N (default 2000),
//            --crash-recovery-rounds N (default 5), --json, --keep, --samples FILE (every
//            process sample as CSV), --rss-bound-mib-h X (the per-hour bound on memory
//            holding data, default 1), --pace-factor F, --no-tmpfs (a full disk as a checkpoint over maxBytes, not a
//            filled tmpfs; that is also what happens where mounting fails, e.g. not root)
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const v8 = require('node:v8')
const vm = require('node:vm')

const { StandinGpus, requireStandinLibrary } = require('../__test__/helpers/standin')
const { Recorder } = require('./soak/recorder')
const { FaultSchedule } = require('./soak/schedule')
const { buildService, mountTinyTmpfs, unmount, sleep } = require('./soak/service')
const { MiB, SAMPLE_FIELDS, openFds, processHeapFromMetrics, sampleProcess, samplesCsv, summarizeSamples, overlaps } = require('./soak/stats')
const { runCrashLoop, runCrashDuringRecovery, unmatchedRecoveries, describeUnmatched } = require('./soak/crash')
const { table, duration, fmt } = require('./soak/report')

const USAGE = `usage: node scripts/soak.js ([--compressed] [--checks N] | --hours H [--interval-ms M]) [--seconds S]
       [--crash-kills N] [--crash-recovery-rounds N] [--json] [--keep] [--samples FILE] [--no-tmpfs] [--rss-bound-mib-h X] [--pace-factor F]`

class UsageError extends Error {}

// After warm-up, whatever the run's length: RSS growth (a sanity bound beside the per-hour
// bound on memory holding data) and growth of file-backed pages (code is paged in once; a
// leak of file mappings keeps growing).
const RSS_GROWTH_LIMIT_MIB = 8
/** The metrics history's documented bound for 8 GPUs (`HistoryPolicy::disk_bound_bytes(8)`, docs/report.md). */
const HISTORY_DISK_BOUND_BYTES = 10353024
const FILE_BACKED_GROWTH_LIMIT_MIB = 4

function parseArgs(argv) {
  const args = { compressed: false, checks: null, hours: null, intervalMs: null, seconds: null, crashKills: 2000, crashRecoveryRounds: 5, json: false, keep: false, samplesFile: null, rssBoundMibH: 1, paceFactor: null, tmpfs: true }
  const number = (name, value, { integer = false, min = 0 } = {}) => {
    const n = Number(value)
    if (value === undefined || !Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) throw new UsageError(`${name} needs a ${integer ? 'whole ' : ''}number >= ${min}, got ${value}`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined]
    const value = () => (inline !== undefined ? inline : argv[++i])
    switch (flag) {
      case '--compressed': args.compressed = true; break
      case '--checks': args.checks = number(flag, value(), { integer: true, min: 1 }); break
      case '--hours': args.hours = number(flag, value()); break
      case '--interval-ms': args.intervalMs = number(flag, value(), { integer: true, min: 1 }); break
      case '--seconds': args.seconds = number(flag, value()); break
      case '--crash-kills': args.crashKills = number(flag, value(), { integer: true }); break
      case '--crash-recovery-rounds': args.crashRecoveryRounds = number(flag, value(), { integer: true }); break
      case '--json': args.json = true; break
      case '--keep': args.keep = true; break
      case '--samples': args.samplesFile = value(); if (!args.samplesFile) throw new UsageError('--samples needs a file name'); break
      case '--no-tmpfs': args.tmpfs = false; break
      case '--rss-bound-mib-h': args.rssBoundMibH = number(flag, value()); break
      case '--pace-factor': args.paceFactor = number(flag, value(), { min: 1 }); break
      case '-h': case '--help': console.log(USAGE); process.exit(0); break
      default: throw new UsageError(`unknown argument ${a}\n${USAGE}`)
    }
  }
  if (args.compressed && args.hours !== null) throw new UsageError('--compressed and --hours do not go together')
  // Without a mode: the time-compressed proof run.
  if (!args.compressed && args.hours === null && args.intervalMs === null) args.compressed = true
  if (!args.compressed && args.hours === null && args.seconds === null) throw new UsageError(`real time needs --hours H or --seconds S\n${USAGE}`)
  if (args.compressed && args.intervalMs !== null && args.intervalMs !== 1) throw new UsageError('--compressed runs at intervalMs 1')
  if (!args.compressed && args.checks !== null) throw new UsageError('--checks is for --compressed; real time is bounded by --hours or --seconds')
  return args
}

/** The timings of a mode; durations of the schedule are in units of T. */
function configFor(args) {
  const compressed = args.compressed
  const intervalMs = compressed ? 1 : (args.intervalMs || 60000)
  const T = compressed ? 250 : Math.max(250, intervalMs)
  const checkTimeoutMs = compressed ? 5000 : 30000
  return {
    mode: compressed ? 'compressed' : 'real',
    intervalMs,
    T,
    checkTimeoutMs,
    stepTimeoutMs: Math.min(30000, 2 * T),
    deviceWaitMs: Math.min(60000, 8 * T),
    lostReturnMs: Math.min(10000, Math.round(1.2 * T)),
    xidWindowMs: 6 * T,
    warningIntervalMs: 4 * T,
    budgetMax: 4,
    budgetWindowMs: 16 * T,
    budgetToleranceMs: 250,
    checkpointIntervalMs: T,
    checkpointMaxBytes: 1024 * 1024,
    // The metrics history the morning report reads: compressed, 100 ms buckets, so that the
    // fine tier (8,640 of them) turns over several times and its retention is exercised.
    historyStepMs: compressed ? 100 : 10000,
    tmpfsBytes: 1024 * 1024,
    workloadEveryMs: compressed ? 20 : Math.min(5000, Math.max(20, Math.round(T / 12))),
    gapLimitMs: compressed ? 2000 : intervalMs + 10000,
    sampleEveryMs: compressed ? 2000 : Math.min(60000, Math.max(2000, T)),
    progressEveryMs: compressed ? 10000 : 60000,
    paceFactor: args.paceFactor || (compressed ? 5 : 1.25),
    targetChecks: compressed ? (args.checks || 1000000) : null,
    wallMs: args.seconds !== null ? args.seconds * 1000 : (args.hours !== null ? args.hours * 3600000 : null),
    rssBoundMibH: args.rssBoundMibH,
  }
}

function log(line) {
  process.stderr.write(`${line}\n`)
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const config = configFor(args)
  const started = Date.now()
  const failures = []
  const fail = (message) => failures.push(message)
  let uncaught = 0
  process.on('uncaughtException', (e) => { uncaught++; log(`uncaught exception: ${e && e.stack}`) })
  process.on('unhandledRejection', (e) => { uncaught++; log(`unhandled rejection: ${e && e.stack}`) })

  // The stand-in must be in place before the addon opens NVML.
  const library = requireStandinLibrary()
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-soak-'))
  const dirs = {
    root,
    standin: path.join(root, 'standin'),
    state: path.join(root, 'state'),
    incidents: path.join(root, 'state', 'incidents'),
    history: path.join(root, 'state', 'history'),
    checkpointMount: path.join(root, 'checkpoint-disk'),
    checkpoints: null,
    crash: path.join(root, 'crash'),
    crashRecovery: path.join(root, 'crash-recovery-incidents'),
  }
  fs.mkdirSync(dirs.standin, { recursive: true })
  fs.mkdirSync(path.dirname(dirs.incidents), { recursive: true, mode: 0o700 })
  const gpus = new StandinGpus(dirs.standin, 8)
  process.env.HPC_HEALTH_STANDIN_STATE = gpus.file
  const h = require('..')

  // The checkpoint disk: a 1 MiB tmpfs the schedule can fill, or (not root) a maxBytes limit.
  const mount = args.tmpfs ? mountTinyTmpfs(dirs.checkpointMount, config.tmpfsBytes) : { mounted: false, reason: '--no-tmpfs' }
  if (!mount.mounted) fs.mkdirSync(dirs.checkpointMount, { recursive: true, mode: 0o700 })
  const disk = mount.mounted
    ? { method: 'tmpfs', mountPoint: dirs.checkpointMount, note: `tmpfs of ${config.tmpfsBytes} bytes, filled during the window` }
    : { method: 'maxBytes', mountPoint: null, note: `no tmpfs (${mount.reason}): a state over maxBytes ${config.checkpointMaxBytes} during the window` }
  dirs.checkpoints = path.join(dirs.checkpointMount, 'state')
  // Whatever happens, the tmpfs does not outlive the process.
  let mounted = mount.mounted
  process.on('exit', () => { if (mounted) unmount(dirs.checkpointMount) })
  log(`soak: ${config.mode} mode, intervalMs ${config.intervalMs}, T ${config.T} ms; state in ${root}; full disk by ${disk.method} (${disk.note})`)

  // Collect (and throw away) garbage before each sample, so that the RSS slope is the
  // process's, not the collector's timing.
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc')

  const recorder = new Recorder({ budget: { max: config.budgetMax, windowMs: config.budgetWindowMs, toleranceMs: config.budgetToleranceMs }, gapLimitMs: config.gapLimitMs })
  let schedule = null
  const faults = { oversizeCheckpoint: () => schedule.oversizeCheckpoint(), journalFailureExpected: (t) => schedule.journalFailureExpected(t) }
  const parts = buildService({ h, library, gpus, dirs, config, recorder, faults })
  schedule = new FaultSchedule({ T: config.T, config, gpus, parts, recorder, disk, log })
  recorder.allowGap = (from, to, gap) => schedule.allowGap(from, to, gap)

  // Samples in preallocated columns (decimated if they would overflow), so that keeping
  // them does not grow the heap being measured.
  const CAPACITY = 8192
  const columns = Object.fromEntries(SAMPLE_FIELDS.map((k) => [k, new Float64Array(CAPACITY)]))
  let nSamples = 0
  let sampleStride = 1
  let sampleTick = 0
  const takeSample = () => {
    if (sampleTick++ % sampleStride !== 0) return
    gc()
    const s = sampleProcess(() => processHeapFromMetrics(parts.supervisor.metrics()))
    if (nSamples === CAPACITY) {
      for (const c of Object.values(columns)) for (let i = 0; i < CAPACITY / 2; i++) c[i] = c[2 * i]
      nSamples = CAPACITY / 2
      sampleStride *= 2
    }
    for (const k of Object.keys(columns)) columns[k][nSamples] = s[k] === null ? NaN : s[k]
    nSamples++
  }
  // NaN is how a column stores null.
  const samples = () => Array.from({ length: nSamples }, (_, i) => Object.fromEntries(SAMPLE_FIELDS.map((k) => [k, Number.isNaN(columns[k][i]) ? null : columns[k][i]])))

  // Stop conditions.
  let interrupted = null
  const onSignal = (signal) => { interrupted = signal; log(`soak: ${signal}: stopping`) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  let loopStarted = null
  let softStoppedAt = null
  const softStop = () => {
    if (softStoppedAt) return true
    const elapsed = Date.now() - loopStarted
    const done = interrupted || (config.wallMs !== null && elapsed >= config.wallMs) || (config.targetChecks !== null && parts.supervisor.status().checks >= config.targetChecks)
    if (done) softStoppedAt = Date.now()
    return Boolean(done)
  }
  const graceMs = config.mode === 'compressed' ? 15000 : 3 * config.T
  const hardStop = () => Boolean(interrupted) || (softStoppedAt !== null && Date.now() - softStoppedAt > graceMs)

  // Progress.
  const progress = () => {
    const s = parts.supervisor.status()
    const elapsed = (Date.now() - loopStarted) / 1000
    const f = schedule.figures()
    const memory = process.memoryUsage()
    const target = config.targetChecks ? `/${fmt(config.targetChecks)}` : ''
    log(`[soak ${duration(elapsed)}] checks ${fmt(s.checks)}${target} (${fmt(s.checks / elapsed, 0)}/s) | cycle ${f.cycles} | faults ${f.verified}/${f.injected} verified, ${f.failures.length} failed | incidents ${fmt(Object.values(recorder.incidentsByKind).reduce((a, b) => a + b, 0))} | recoveries ${fmt(recorder.recoveryEvents)} | state ${s.state} | rss ${fmt(memory.rss / MiB, 1)} MiB | fds ${openFds()}`)
  }

  // Run.
  parts.supervisor.start()
  loopStarted = Date.now()
  parts.workload.start()
  takeSample()
  const sampler = setInterval(takeSample, config.sampleEveryMs)
  const progressTimer = setInterval(progress, config.progressEveryMs)
  try {
    await schedule.run({ softStop, hardStop })
  } catch (e) {
    fail(`the fault schedule threw: ${e.stack}`)
  }
  await sleep(Math.min(4 * config.T, 5000))
  clearInterval(progressTimer)
  // Samples from here on see the service stopping: it closes its descriptors (the kernel
  // pressure watch) and threads, which the flatness checks below do not count as change.
  const stoppingAt = Date.now()
  await parts.workload.stop()
  await parts.supervisor.stop()
  const loopEnded = Date.now()
  clearInterval(sampler)
  takeSample()
  // Events already queued for the JS thread arrive now.
  await sleep(200)
  progress()
  const status = parts.supervisor.status()

  // What the incident log holds: every recovery run, started and finished.
  const records = await parts.incidentLog.read()
  const logRuns = records.filter((r) => r.kind === 'recovery_finished' && r.details).map((r) => ({ id: r.details.id, start: r.details.started_at, end: r.details.finished_at }))
  const logOverlaps = overlaps(logRuns)
  const unmatchedInSoak = unmatchedRecoveries(records)
  const checkpointsListed = (await parts.checkpointManager.listCheckpoints()).length
  // The morning report on the whole run (the supervisor has stopped: the history is closed):
  // its figures are the incident log's and the history's.
  const reportStarted = Date.now()
  const report = await h.readReport(dirs.state, { since: loopStarted, until: loopEnded })
  const reportMs = Date.now() - reportStarted
  const historyBytes = fs.readdirSync(dirs.history).reduce((n, name) => n + fs.statSync(path.join(dirs.history, name)).size, 0)
  const startedInSpan = records.filter((r) => r.kind === 'recovery_started' && r.timestamp >= loopStarted && r.timestamp <= loopEnded).length
  const degraded = parts.checkpointManager.degraded
  const activeAtEnd = parts.checkpointManager.getActiveOperations().length
  await parts.checkpointManager.close()
  await parts.incidentLog.close()
  if (mounted) {
    unmount(dirs.checkpointMount)
    mounted = false
  }

  const loopS = (loopEnded - loopStarted) / 1000
  const checks = status.checks
  const achieved = checks / loopS
  const intervalPerS = 1000 / config.intervalMs
  const rec = recorder.figures()
  const allSamples = samples()
  if (args.samplesFile) fs.writeFileSync(args.samplesFile, samplesCsv(allSamples))
  const sampleSummary = summarizeSamples(allSamples, { warmupShare: 0.25, warmupCapMs: config.mode === 'compressed' ? 15 * 60000 : 60 * 60000, warmupUntil: schedule.firstCycleEndedAt, runningUntil: stoppingAt })
  const figures = {
    ok: false,
    failures,
    mode: config.mode,
    config,
    checks,
    check_failures: status.check_failures,
    loop_s: loopS,
    equivalent_days_at_one_per_minute: checks / 1440,
    pace: { achieved_per_s: achieved, interval_per_s: intervalPerS, factor_allowed: config.paceFactor },
    recorder: rec,
    faults: schedule.figures(),
    workload: { ...parts.workload.figures(), active_operations_at_end: activeAtEnd },
    hook_calls: parts.worker.calls,
    checkpoints: { disk_method: disk.method, disk_note: disk.note, listed: checkpointsListed, degraded, captured: parts.service.checkpointsCaptured, last_checkpoint: status.last_checkpoint },
    incident_log: { records: records.length, runs: logRuns.length, overlaps: logOverlaps, unmatched_recovery_started: unmatchedInSoak.map(describeUnmatched) },
    report: {
      ms: reportMs,
      verdict: report.verdict.line,
      status: report.verdict.status,
      recoveries: report.verdict.recoveries,
      recovery_started_in_log: startedInSpan,
      no_data_ms: report.verdict.no_data_ms,
      skipped_records: report.skipped_records,
      history_bytes: historyBytes,
    },
    samples: sampleSummary,
    uncaught,
    interrupted,
  }

  // The assertions on the soak.
  if (interrupted) fail(`interrupted by ${interrupted}`)
  if (uncaught) fail(`${uncaught} uncaught exception(s) or unhandled rejection(s)`)
  if (config.targetChecks !== null && config.wallMs === null && checks < config.targetChecks) fail(`${checks} checks, fewer than the ${config.targetChecks} asked for`)
  if (rec.checks_seen !== checks) fail(`${rec.checks_seen} 'health' events for ${checks} checks`)
  if (status.check_failures !== 0) fail(`${status.check_failures} health checks failed (monitoring errors)`)
  if (achieved < intervalPerS / config.paceFactor) fail(`the loop fell behind: ${achieved.toFixed(1)} checks/s, the interval allows ${intervalPerS.toFixed(1)} (factor ${config.paceFactor} allowed)`)
  if (achieved > intervalPerS * 1.05 + 0.01) fail(`the loop ran faster than its interval: ${achieved.toFixed(1)} checks/s for ${intervalPerS.toFixed(1)}`)
  for (const g of rec.gap_violations) fail(`no health check for ${g.ms} ms (limit ${config.gapLimitMs} ms) ending ${new Date(g.to).toISOString()}`)
  for (const line of figures.faults.failures) fail(`fault: ${line}`)
  const kindsSeen = Object.entries(figures.faults.by_kind).filter(([, c]) => c.injected > 0).length
  if (figures.faults.cycles > 1 && kindsSeen < Object.keys(figures.faults.by_kind).length) fail(`only ${kindsSeen} kinds of fault were injected`)
  for (const o of rec.runs.overlaps) fail(`recoveries overlapped: ${o.first} and ${o.second} by ${o.by_ms} ms`)
  for (const o of logOverlaps) fail(`recoveries in the incident log overlapped: ${o.first} and ${o.second} by ${o.by_ms} ms`)
  for (const v of rec.budget.violations) fail(`budget broken: ${v.count} recoveries within ${v.span_ms} ms (max ${config.budgetMax} per ${config.budgetWindowMs} ms)`)
  if (figures.faults.by_kind.memory_relapse.verified > 0 && !(rec.incidents_by_kind.recovery_budget_exhausted > 0)) fail('no memory relapse exhausted the budget: the budget was not exercised')
  for (const line of figures.incident_log.unmatched_recovery_started) fail(`after a clean stop: ${line}`)
  const r = figures.report
  if (r.recoveries < r.recovery_started_in_log) fail(`the report counts ${r.recoveries} recoveries, the incident log began ${r.recovery_started_in_log}`)
  if (r.skipped_records !== 0) fail(`the report skipped ${r.skipped_records} damaged history records or incident lines`)
  // The history covers the run: at most a few coarse buckets at its ends go unrecorded.
  if (r.no_data_ms > 30 * config.historyStepMs * 3) fail(`the history has no record for ${r.no_data_ms} ms of the run`)
  if (r.history_bytes > HISTORY_DISK_BOUND_BYTES) fail(`the history takes ${r.history_bytes} bytes, over its bound of ${HISTORY_DISK_BOUND_BYTES}`)
  if (activeAtEnd !== 0) fail(`${activeAtEnd} request operations still active in the journal at the end`)
  for (const line of figures.workload.unexpected_failures) fail(`journal write failed outside a full-disk window: ${line}`)
  if (sampleSummary) {
    const s = sampleSummary
    const longEnough = s.span_after_warmup_s >= 600 && s.samples_after_warmup >= 30
    // Per check, and what that is at one check a minute (time compressed, an hour of wall
    // time is years of checking).
    const checksAfterWarmup = checks * (s.span_after_warmup_s / loopS)
    s.rss_kib_per_million_checks = checksAfterWarmup > 0 ? (s.rss_growth_after_warmup_mib * 1024 * 1e6) / checksAfterWarmup : null
    s.rss_mib_per_h_at_one_check_per_minute = checksAfterWarmup > 0 ? (s.rss_growth_after_warmup_mib * 60) / checksAfterWarmup : null
    // Asserted: memory that can hold data (see summarizeSamples) grows at most the bound per
    // hour; RSS itself, whose slope also counts code paged in and V8's heap sizing, is reported
    // and bounded in total; file-backed pages (a leak of mappings would show there) too.
    const bound = config.rssBoundMibH
    if (longEnough && s.held_slope_mib_per_h !== null) {
      const heldIs = s.held_source === 'allocator' ? "the C allocator's bytes in use plus V8's live objects" : "anonymous RSS less V8's free heap"
      s.rss_note = `asserted: memory holding data (${heldIs}) grows at most ${bound} MiB/h, RSS at most ${RSS_GROWTH_LIMIT_MIB} MiB and file-backed pages at most ${FILE_BACKED_GROWTH_LIMIT_MIB} MiB after warm-up`
      if (s.held_slope_mib_per_h > bound) fail(`memory holding data grows ${s.held_slope_mib_per_h.toFixed(2)} MiB/h after warm-up (bound ${bound} MiB/h)`)
    } else if (longEnough) {
      // No RssAnon to split RSS with (not Linux): the slope of RSS itself.
      s.rss_note = `asserted: RSS slope at most ${bound} MiB/h`
      if (s.rss_slope_mib_per_h > bound) fail(`RSS grows ${s.rss_slope_mib_per_h.toFixed(2)} MiB/h after warm-up (bound ${bound} MiB/h)`)
    } else {
      // Too short to extrapolate to an hour: only bounds on the growth actually seen.
      s.rss_note = `run too short for a per-hour bound (${Math.round(s.span_after_warmup_s)} s after warm-up, 600 s needed): RSS growth bounded to ${RSS_GROWTH_LIMIT_MIB} MiB, file-backed pages to ${FILE_BACKED_GROWTH_LIMIT_MIB} MiB`
    }
    if (s.rss_growth_after_warmup_mib > RSS_GROWTH_LIMIT_MIB) fail(`RSS grew ${s.rss_growth_after_warmup_mib.toFixed(2)} MiB after warm-up in ${Math.round(s.span_after_warmup_s)} s (bound ${RSS_GROWTH_LIMIT_MIB} MiB)`)
    if (s.file_backed_growth_after_warmup_mib > FILE_BACKED_GROWTH_LIMIT_MIB) fail(`file-backed pages grew ${s.file_backed_growth_after_warmup_mib.toFixed(2)} MiB after warm-up (bound ${FILE_BACKED_GROWTH_LIMIT_MIB} MiB)`)
    if (s.samples_after_warmup < 5) fail(`only ${s.samples_after_warmup} samples after warm-up`)
    if (s.fds.spread > 4) fail(`open file descriptors not flat after warm-up: ${s.fds.min}–${s.fds.max}`)
    if (s.fds.end > s.fds.max) fail(`open file descriptors grew after stop: ${s.fds.end}, ${s.fds.max} at most while running`)
    if (s.threads.spread > 8) fail(`threads not flat after warm-up: ${s.threads.min}–${s.threads.max}`)
  } else {
    fail('no process samples')
  }

  // Crashes at scale, after the soak so that they do not disturb its figures.
  if (!interrupted && args.crashKills > 0) {
    log(`crash loop: ${args.crashKills} SIGKILLs of a checkpoint writer ...`)
    const every = Math.max(1, Math.round(args.crashKills / 10))
    figures.crash = await runCrashLoop({ directory: dirs.crash, kills: args.crashKills, onProgress: (n) => { if (n % every === 0) log(`  ${n}/${args.crashKills} kills`) } })
    for (const line of figures.crash.failures) fail(`crash loop: ${line}`)
    if (figures.crash.kills !== args.crashKills) fail(`crash loop: ${figures.crash.kills} of ${args.crashKills} kills done`)
  }
  if (!interrupted && args.crashRecoveryRounds > 0) {
    log(`crash during recovery: ${args.crashRecoveryRounds} round(s) ...`)
    const env = { ...process.env, HPC_HEALTH_NVML_LIBRARY: library, HPC_HEALTH_STANDIN_STATE: gpus.file }
    figures.crash_recovery = await runCrashDuringRecovery({ directory: dirs.crashRecovery, rounds: args.crashRecoveryRounds, env })
    for (const line of figures.crash_recovery.failures) fail(`crash during recovery: ${line}`)
    if (figures.crash_recovery.unmatched.length !== args.crashRecoveryRounds) fail(`crash during recovery: ${figures.crash_recovery.unmatched.length} unmatched recovery_started records for ${args.crashRecoveryRounds} runs killed`)
    log('incident log after the restarts, unmatched records:')
    for (const line of figures.crash_recovery.unmatched_lines) log(`  ${line}`)
  }

  figures.duration_s = (Date.now() - started) / 1000
  figures.ok = failures.length === 0
  if (!args.keep) fs.rmSync(root, { recursive: true, force: true })
  else log(`state kept in ${root}`)

  const text = table(figures)
  if (args.json) {
    log(text)
    process.stdout.write(JSON.stringify(figures, null, 2) + '\n')
  } else {
    process.stdout.write(text + '\n')
  }
  if (failures.length) {
    log(`\nSOAK FAILED: ${failures.length} assertion(s)`)
    for (const line of failures.slice(0, 50)) log(`  - ${line}`)
    if (failures.length > 50) log(`  ... and ${failures.length - 50} more`)
  } else {
    log('\nsoak passed')
  }
  process.exit(failures.length ? 1 : 0)
}

main().catch((e) => {
  log(e instanceof UsageError ? `soak: ${e.message}` : `soak: ${e && e.stack ? e.stack : e}`)
  process.exit(2)
})
