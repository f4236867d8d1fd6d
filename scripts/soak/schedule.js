'use strict'
// The fault schedule: a cycle of faults injected through the stand-in GPU state file, the
// worker hooks and the checkpoint disk, one at a time, each followed by a calm in which
// health must return. Every fault is judged at the end of its calm against what the
// supervisor reported while it lasted (incidents, recovery actions, warnings, errors), and
// the recorder's window of events is then cut. Durations are in units of T: 250 ms when
// time is compressed, the check interval in real time.
const fs = require('node:fs')
const path = require('node:path')
const { GiB, BASELINE } = require('../../__test__/helpers/standin')

class Abort extends Error {}

const KINDS = ['temperature_spike', 'memory_wave', 'memory_relapse', 'hook_fails', 'hook_hangs', 'fragmentation', 'device_lost', 'xid_storm', 'disk_full']

/** Recovery action types a fault of each kind may cause; anything else is unexpected. */
const ALLOWED_ACTIONS = {
  calm: [],
  temperature_spike: ['pause_intake'],
  memory_wave: ['memory'],
  memory_relapse: ['memory'],
  hook_fails: ['memory'],
  hook_hangs: ['memory'],
  fragmentation: ['out_of_memory'],
  device_lost: ['device_lost'],
  xid_storm: ['operator', 'process'],
  disk_full: [],
}

const sameAction = (want) => (a) => Object.entries(want).every(([k, v]) => (v instanceof RegExp ? v.test(String(a[k])) : a[k] === v))

class FaultSchedule {
  constructor({ T, config, gpus, parts, recorder, disk, log = () => {} }) {
    this.T = T
    this.config = config
    this.gpus = gpus
    this.parts = parts
    this.recorder = recorder
    this.disk = disk // { method: 'tmpfs' | 'maxBytes', mountPoint }
    this.log = log
    this.counts = Object.fromEntries(KINDS.map((k) => [k, { injected: 0, verified: 0, failed: 0, aborted: 0 }]))
    this.failures = []
    this.current = null
    this.oversize = false
    this.cycle = 0
    this.firstCycleEndedAt = null
    this.softStop = () => false
    this.hardStop = () => false
    // restartProcess calls per storm: at most one per Xid 94 event (an event still in the Xid
    // window after its restart does not ask again).
    this.notes = { xid_storm_restarts: {}, budget_exhausted_in_storms: 0, budget_exhausted_in_relapses: 0, xid_watch_wait_ms_max: 0, disk_windows_with_journal_failures: 0 }
  }

  // Questions from the service's hooks and workload.
  oversizeCheckpoint() {
    return this.oversize
  }

  journalFailureExpected(t) {
    const f = this.current
    return Boolean(f && f.kind === 'disk_full' && this.disk.method === 'tmpfs' && t >= f.start && (f.cleared === null || t <= f.cleared + 2000 + 2 * this.config.workloadEveryMs))
  }

  /** For the recorder: is a long gap between two health checks explained by the fault under way? */
  allowGap(from, to, gap) {
    const f = this.current
    if (!f || to < f.start) return null
    const base = this.recorder.gapLimitMs
    if (f.kind === 'hook_hangs' && gap <= base + 2 * this.config.stepTimeoutMs) return `hung hook (step timeout ${this.config.stepTimeoutMs} ms)`
    if (f.kind === 'device_lost' && gap <= base + this.config.deviceWaitMs + this.config.stepTimeoutMs) return `device wait (deviceWaitMs ${this.config.deviceWaitMs})`
    return null
  }

  // Time.
  async wait(ms) {
    const until = Date.now() + ms
    while (Date.now() < until) {
      if (this.hardStop()) throw new Abort('hard stop')
      await new Promise((resolve) => setTimeout(resolve, Math.min(until - Date.now(), 200)))
    }
  }

  async waitFor(what, predicate, ms) {
    const until = Date.now() + ms
    for (;;) {
      if (predicate()) return true
      if (Date.now() >= until) return false
      if (this.hardStop()) throw new Abort('hard stop')
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.min(20, this.T / 10))))
    }
  }

  begin(kind, details) {
    const n = kind === 'calm' ? 0 : ++this.counts[kind].injected
    const fault = { id: `${kind}#${n}`, kind, details, start: Date.now(), cleared: null, deadline: null, problems: [] }
    this.current = fault
    return fault
  }

  expect(fault, ok, message) {
    if (!ok) fault.problems.push(message)
  }

  /** Waits for health to return after a fault was cleared; then judges it. */
  async calm(fault, judge) {
    await this.wait(4 * this.T)
    const { supervisor } = this.parts
    const healthy = await this.waitFor('health', () => {
      const s = supervisor.status()
      return s.state === 'healthy' && s.accepting_requests
    }, 12 * this.T + 2000)
    fault.deadline = Date.now()
    if (!healthy) {
      const s = supervisor.status()
      this.expect(fault, false, `health did not return (state ${s.state}, accepting ${s.accepting_requests}, paused ${JSON.stringify(s.paused_reasons)})`)
    }
    judge(fault)
    this.finish(fault)
  }

  /** Events of the fault's window. */
  events(fault, filter) {
    return this.recorder.find(fault.start, fault.deadline, filter)
  }

  actions(fault) {
    return this.events(fault, (e) => e.name === 'recovery').flatMap((e) => e.actions.map((a) => ({ ...a, at: e.at })))
  }

  hasIncident(fault, kind, filter = () => true) {
    return this.events(fault, (e) => e.name === 'incident' && e.kind === kind && filter(e)).length > 0
  }

  /** What every fault is judged on besides its own expectations. */
  judgeCommon(fault) {
    const allowed = ALLOWED_ACTIONS[fault.kind]
    for (const a of this.actions(fault)) {
      if (!allowed.includes(a.type)) fault.problems.push(`unexpected recovery ${a.type}/${a.issue}/${a.device}/${a.result}`)
    }
    for (const e of this.events(fault, (x) => x.name === 'error')) {
      if (!(fault.kind === 'disk_full' && e.kind === 'checkpoint')) fault.problems.push(`unexpected error event (${e.kind}): ${e.message}`)
    }
    for (const e of this.events(fault, (x) => x.name === 'incident' && x.kind === 'monitoring_error')) {
      fault.problems.push(`monitoring error: ${e.message}`)
    }
    if (fault.kind !== 'calm' && fault.kind !== 'disk_full') {
      this.expect(fault, this.hasIncident(fault, 'health_unhealthy'), 'no health_unhealthy incident')
      this.expect(fault, this.hasIncident(fault, 'health_recovered'), 'no health_recovered incident')
    }
  }

  finish(fault) {
    this.judgeCommon(fault)
    if (fault.kind !== 'calm') {
      const c = this.counts[fault.kind]
      if (fault.problems.length) c.failed++
      else c.verified++
    }
    if (fault.problems.length) {
      const line = `${fault.id} (${JSON.stringify(fault.details)}): ${fault.problems.join('; ')}`
      if (this.failures.length < 100) this.failures.push(line)
      this.log(`FAULT CHECK FAILED ${line}`)
    }
    this.recorder.cut(fault.deadline)
    this.parts.worker.cleanups = []
    this.parts.worker.reinitialized = []
    this.parts.worker.restarts = []
    this.current = null
  }

  abort(fault) {
    if (fault && fault.kind !== 'calm') this.counts[fault.kind].aborted++
    this.gpus.reset()
    this.gpus.clearXids()
    this.parts.worker.hookMode = 'ok'
    this.oversize = false
    this.unfill()
    this.current = null
  }

  // The disk.
  fill() {
    if (this.disk.method !== 'tmpfs') {
      this.oversize = true
      return
    }
    const filler = path.join(this.disk.mountPoint, 'filler')
    const fd = fs.openSync(filler, 'a', 0o600)
    const chunk = Buffer.alloc(64 * 1024, 0x5a)
    try {
      for (;;) fs.writeSync(fd, chunk)
    } catch (e) {
      if (e.code !== 'ENOSPC') throw e
    }
    // The last partial pages too.
    try {
      for (;;) fs.writeSync(fd, chunk, 0, 512)
    } catch (e) {
      if (e.code !== 'ENOSPC') throw e
    } finally {
      fs.closeSync(fd)
    }
  }

  unfill() {
    this.oversize = false
    if (this.disk.method === 'tmpfs') fs.rmSync(path.join(this.disk.mountPoint, 'filler'), { force: true })
  }

  // The phases.
  async initialCalm() {
    const fault = this.begin('calm', {})
    await this.calm(fault, () => {})
  }

  async temperatureSpike(d) {
    const fault = this.begin('temperature_spike', { device: d, temperature: 91 })
    this.gpus.set(d, { temperature: 91 })
    const want = sameAction({ type: 'pause_intake', issue: 'TEMPERATURE_HIGH', device: d, result: 'paused' })
    const paused = await this.waitFor('pause', () => this.recorder.find(fault.start, Infinity, (e) => e.name === 'recovery' && e.actions.some(want)).length > 0, 8 * this.T)
    if (paused) {
      const s = this.parts.supervisor.status()
      this.expect(fault, !s.accepting_requests && 'thermal' in s.paused_reasons, `intake not paused for the heat (${JSON.stringify(s.paused_reasons)})`)
    }
    await this.wait(4 * this.T)
    this.gpus.set(d, { temperature: BASELINE.temperature })
    fault.cleared = Date.now()
    await this.calm(fault, () => {
      this.expect(fault, this.actions(fault).some(want), `no pause_intake recovery for TEMPERATURE_HIGH on GPU ${d}`)
    })
  }

  async memoryWave(d1, d2) {
    const fault = this.begin('memory_wave', { devices: [d1, d2] })
    // A swell that stays under the threshold (85%): no recovery.
    this.gpus.set(d1, { memory_used: 56 * GiB })
    await this.wait(this.T)
    this.gpus.set(d1, { memory_used: 66 * GiB })
    this.gpus.set(d2, { memory_used: 60 * GiB })
    await this.wait(this.T)
    this.gpus.set(d1, { memory_used: 30 * GiB })
    this.gpus.set(d2, { memory_used: 30 * GiB })
    await this.wait(this.T)
    const swellEnd = Date.now()
    // The crest: both over the threshold; the worker frees its cache when asked.
    this.parts.worker.hookMode = 'ok'
    this.gpus.set(d1, { memory_used: 74 * GiB })
    this.gpus.set(d2, { memory_used: 72 * GiB })
    const want = sameAction({ type: 'memory', issue: 'GPU_MEMORY_PRESSURE', result: 'recovered' })
    await this.waitFor('recovery', () => this.recorder.find(swellEnd, Infinity, (e) => e.name === 'recovery').length > 0, 8 * this.T)
    this.gpus.releaseMemory()
    fault.cleared = Date.now()
    await this.calm(fault, () => {
      const early = this.recorder.find(fault.start, swellEnd, (e) => e.name === 'recovery')
      this.expect(fault, early.length === 0, `a recovery ran while memory stayed under the threshold: ${JSON.stringify(early.map((e) => e.actions))}`)
      this.expect(fault, this.actions(fault).some(want), 'no memory recovery with result recovered for GPU_MEMORY_PRESSURE')
    })
  }

  async memoryRelapse(d) {
    // Every recovery succeeds, and the memory is back moments later: without the budget the
    // supervisor would clear caches for ever. It must stop, say so once, and keep intake paused.
    const fault = this.begin('memory_relapse', { device: d })
    this.parts.worker.relapse = { device: d, memoryUsed: 76 * GiB, afterMs: Math.max(50, Math.round(this.T / 5)) }
    this.parts.worker.hookMode = 'relapse'
    this.gpus.set(d, { memory_used: 76 * GiB })
    const exhausted = () => this.recorder.find(fault.start, Infinity, (e) => e.name === 'incident' && e.kind === 'recovery_budget_exhausted').length > 0
    const stopped = await this.waitFor('the budget to run out', exhausted, 4 * this.config.budgetWindowMs)
    const pausedByBudget = this.parts.supervisor.status().paused_reasons.budget !== undefined
    this.parts.worker.hookMode = 'ok'
    this.gpus.releaseMemory()
    fault.cleared = Date.now()
    await this.calm(fault, () => {
      this.expect(fault, stopped, 'memory that came back after every recovery never exhausted the recovery budget')
      this.expect(fault, !stopped || pausedByBudget, 'the budget ran out but intake was not paused for it')
      const reports = this.events(fault, (e) => e.name === 'incident' && e.kind === 'recovery_budget_exhausted').length
      this.expect(fault, reports <= 1, `recovery_budget_exhausted reported ${reports} times in one episode`)
      if (stopped) this.notes.budget_exhausted_in_relapses++
    })
  }

  async failingHook(d, mode) {
    const kind = mode === 'fail' ? 'hook_fails' : 'hook_hangs'
    const code = mode === 'fail' ? 'ERR_STEP_FAILED' : 'ERR_STEP_TIMEOUT'
    const fault = this.begin(kind, { device: d, hook: 'clearGPUCache', code })
    this.parts.worker.hookMode = mode
    this.gpus.set(d, { memory_used: 76 * GiB })
    const want = sameAction({ type: 'memory', result: 'failed', detail: new RegExp(`^${code}`) })
    await this.waitFor('recovery', () => this.recorder.find(fault.start, Infinity, (e) => e.name === 'recovery').length > 0, 8 * this.T + 2 * this.config.stepTimeoutMs)
    this.parts.worker.hookMode = 'ok'
    this.gpus.releaseMemory()
    fault.cleared = Date.now()
    const cleanups = () => this.parts.worker.cleanups.filter((c) => c.code === code && c.step === 'clear_gpu_cache')
    await this.calm(fault, () => {
      this.expect(fault, this.actions(fault).some(want), `no memory recovery with result failed (${code})`)
      this.expect(fault, cleanups().length > 0, `emergencyCleanup was not called with ${code}`)
      const outcome = this.parts.memoryRecovery.lastOutcome
      this.expect(fault, outcome && outcome.result === 'failed' && outcome.error && outcome.error.code === code, `lastOutcome is not the failed run: ${JSON.stringify(outcome && { result: outcome.result, error: outcome.error })}`)
    })
  }

  async fragmentation(d) {
    const fault = this.begin('fragmentation', { device: d })
    // The worker's allocator holds 40 GiB and uses 10: fragmentation 0.75.
    this.parts.worker.report(d, 10 * GiB, 40 * GiB)
    const want = sameAction({ type: 'out_of_memory', issue: 'FRAGMENTATION_HIGH', device: d, result: 'recovered' })
    const before = this.parts.worker.calls.emptyCache
    await this.waitFor('recovery', () => this.recorder.find(fault.start, Infinity, (e) => e.name === 'recovery').length > 0, 8 * this.T)
    fault.cleared = Date.now()
    await this.calm(fault, () => {
      this.expect(fault, this.actions(fault).some(want), `no out_of_memory recovery with result recovered for FRAGMENTATION_HIGH on GPU ${d}`)
      this.expect(fault, this.parts.worker.calls.emptyCache > before, 'emptyCache was not called')
    })
  }

  async deviceLost(d) {
    const fault = this.begin('device_lost', { device: d })
    this.gpus.set(d, { lost: true })
    // The device comes back a while after the recovery began (it follows the episode's first
    // unhealthy check): reinitializeGpu has to wait for it.
    const lostSeen = () => this.recorder.lastUnhealthy && this.recorder.lastUnhealthy.at >= fault.start &&
      this.recorder.lastUnhealthy.issues.some((i) => i.code === 'GPU_LOST' && i.device === d)
    await this.waitFor('episode', lostSeen, 8 * this.T)
    await this.wait(this.config.lostReturnMs)
    this.gpus.set(d, { lost: false })
    fault.returned = Date.now()
    const want = sameAction({ type: 'device_lost', issue: 'GPU_LOST', device: d, result: 'recovered' })
    await this.waitFor('recovery', () => this.recorder.find(fault.start, Infinity, (e) => e.name === 'recovery').length > 0, this.config.deviceWaitMs + 8 * this.T)
    fault.cleared = Date.now()
    await this.calm(fault, () => {
      this.expect(fault, this.actions(fault).some(want), `no device_lost recovery with result recovered for GPU ${d}: ${JSON.stringify(this.actions(fault))}`)
      this.expect(fault, this.parts.worker.reinitialized.length > 0, 'the reinitialize hook was not called')
    })
  }

  async xidWatchArmed() {
    const started = Date.now()
    const armed = await this.waitForAsync(async () => {
      const health = await this.parts.gpuMonitor.checkGpuHealth()
      const watch = health.xid_watch
      return watch && watch.state === 'watching' && watch.devices.length === this.gpus.count
    }, Math.max(15000, 20 * this.T))
    this.notes.xid_watch_wait_ms_max = Math.max(this.notes.xid_watch_wait_ms_max, Date.now() - started)
    return armed
  }

  async waitForAsync(predicate, ms) {
    const until = Date.now() + ms
    for (;;) {
      if (await predicate()) return true
      if (Date.now() >= until) return false
      if (this.hardStop()) throw new Abort('hard stop')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  async xidStorm(a, b, c, e) {
    // Events only reach an armed event set: wait until the watch covers every device.
    if (!(await this.xidWatchArmed())) {
      const fault = this.begin('xid_storm', { skipped: true })
      fault.problems.push('the Xid watch did not cover every device in time; storm not fired')
      fault.deadline = Date.now()
      this.finish(fault)
      return
    }
    const storm = [
      ...Array(3).fill({ device: a, xid: 79 }),
      ...Array(3).fill({ device: b, xid: 48 }),
      ...Array(8).fill({ device: c, xid: 13 }),
      ...Array(2).fill({ device: c, xid: 31 }),
      ...Array(2).fill({ device: e, xid: 94 }),
      { device: b, xid: 63 },
    ]
    const fault = this.begin('xid_storm', { events: storm.length, '79': a, '48': b, '13': c, '94': e })
    const xid94Events = storm.filter((x) => x.xid === 94).length
    this.gpus.fireXids(storm)
    await this.wait(this.config.xidWindowMs + 2 * this.T)
    this.gpus.clearXids()
    fault.cleared = Date.now()
    await this.calm(fault, () => {
      for (const [device, xid] of [[a, 79], [b, 48]]) {
        this.expect(fault, this.hasIncident(fault, 'operator_action_required', (i) => i.code === 'XID' && i.device === device), `no operator_action_required for Xid ${xid} on GPU ${device}`)
        this.expect(fault, this.actions(fault).some(sameAction({ type: 'operator', issue: 'XID', device, result: 'paused' })), `no operator action (paused) for Xid ${xid} on GPU ${device}`)
      }
      this.expect(fault, this.actions(fault).some(sameAction({ type: 'process', issue: 'XID', device: e, result: 'recovered' })), `no process recovery for Xid 94 on GPU ${e}`)
      const restarts = this.parts.worker.restarts.length
      this.expect(fault, restarts > 0, 'restartProcess was not called for Xid 94')
      this.expect(fault, restarts <= xid94Events, `restartProcess was called ${restarts} times for ${xid94Events} Xid 94 events`)
      this.expect(fault, this.events(fault, (x) => x.name === 'warning' && x.code === 'XID' && x.device === c).length > 0, `no XID warning for Xid 13 on GPU ${c}`)
      const n = this.parts.worker.restarts.length
      this.notes.xid_storm_restarts[n] = (this.notes.xid_storm_restarts[n] || 0) + 1
      if (this.hasIncident(fault, 'recovery_budget_exhausted')) this.notes.budget_exhausted_in_storms++
    })
  }

  async diskFull() {
    const fault = this.begin('disk_full', { method: this.disk.method })
    const journalFailuresBefore = this.parts.workload.writeFailures
    // Pages freed while the disk is full (the journal rotating into a new file removes the
    // old one) are taken back: the filler is topped up all through the window.
    const until = Date.now() + 6 * this.T
    while (Date.now() < until) {
      this.fill()
      await this.wait(Math.min(50, until - Date.now()))
    }
    this.unfill()
    fault.cleared = Date.now()
    const { supervisor } = this.parts
    const resumed = await this.waitFor('a checkpoint', () => (supervisor.status().last_checkpoint || 0) > fault.cleared, 2 * this.config.checkpointIntervalMs + 4 * this.T)
    await this.calm(fault, () => {
      this.expect(fault, this.events(fault, (x) => x.name === 'error' && x.kind === 'checkpoint').length > 0, 'no checkpoint error event while the disk was full')
      this.expect(fault, this.hasIncident(fault, 'checkpoint_failed'), 'no checkpoint_failed incident while the disk was full')
      this.expect(fault, resumed, 'no checkpoint succeeded after the disk had room again')
      this.expect(fault, !resumed || !this.parts.checkpointManager.degraded, 'checkpoints succeed again but degraded is still true')
      // Not asserted: with one request at a time the journal often rotates into an empty
      // file when no operation is active and reuses the page its old file freed, so a full
      // disk may never reach it. Counted instead.
      if (this.parts.workload.writeFailures > journalFailuresBefore) this.notes.disk_windows_with_journal_failures++
    })
  }

  /** Runs cycles until `softStop()`; a phase under way when `hardStop()` is abandoned. */
  async run({ softStop, hardStop }) {
    this.softStop = softStop
    this.hardStop = hardStop
    const n = this.gpus.count
    try {
      await this.initialCalm()
      while (!softStop()) {
        const k = this.cycle++
        const phases = [
          () => this.temperatureSpike(k % n),
          () => this.memoryWave((k + 1) % n, (k + 2) % n),
          () => this.memoryRelapse((k + 3) % n),
          () => this.failingHook((k + 3) % n, 'fail'),
          () => this.failingHook((k + 4) % n, 'hang'),
          () => this.fragmentation((k + 5) % n),
          () => this.deviceLost((k + 6) % n),
          () => this.xidStorm((k + 7) % n, k % n, (k + 1) % n, (k + 2) % n),
          () => this.diskFull(),
        ]
        let ran = 0
        for (const phase of phases) {
          if (softStop()) break
          await phase()
          ran++
        }
        if (ran === phases.length && this.firstCycleEndedAt === null) this.firstCycleEndedAt = Date.now()
      }
    } catch (e) {
      if (!(e instanceof Abort)) throw e
      this.abort(this.current)
    }
  }

  figures() {
    const injected = Object.values(this.counts).reduce((s, c) => s + c.injected, 0)
    const verified = Object.values(this.counts).reduce((s, c) => s + c.verified, 0)
    return { cycles: this.cycle, first_cycle_ended_at: this.firstCycleEndedAt, injected, verified, by_kind: this.counts, failures: this.failures, notes: this.notes }
  }
}

module.exports = { FaultSchedule, KINDS, ALLOWED_ACTIONS }
