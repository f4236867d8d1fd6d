'use strict'
// A compressed fault "night" recorded into a state directory laid out as the example service
// lays it out (`<stateDir>/history`, `<stateDir>/incidents`): the real HealthSupervisor with
// its recoveries on two stand-in GPUs, checking every 50 ms into 100 ms history buckets,
// through healthy, a GPU memory ramp over the threshold (pressure, memory recovery), a GPU
// lost and back (device-lost recovery), a GPU over 80 °C, and healthy again. Every phase
// ends on an event the supervisor emits (bounded waits), never on a sleep.
const fs = require('node:fs')
const path = require('node:path')
const { STANDIN_LIBRARY, StandinState, device, GiB } = require('./standin')

const INTERVAL_MS = 50
const HISTORY_STEP_MS = 100
/** Full checks each phase holds its condition for by default, so that it shows in several buckets. */
const CHECKS_PER_PHASE = 8
/** The default thresholds: GPU memory 0.85 of a device, temperature 80 °C. */
const HOT_C = 88
const BASELINE = { memory_used: 8 * GiB, temperature: 45 }
const EVENTS = ['health', 'unhealthy', 'warning', 'recovery', 'incident', 'error']

/** Emitted events, and bounded waits on them. */
class EventTape {
  constructor(supervisor) {
    this.events = []
    this.waiters = new Set()
    for (const name of EVENTS) {
      supervisor.on(name, (payload) => {
        this.events.push({ name, payload, at: Date.now() })
        for (const waiter of this.waiters) waiter()
      })
    }
  }

  count(name) {
    return this.events.reduce((n, e) => n + (e.name === name), 0)
  }

  /** Resolves with the first event from index `from` on that `matches`; rejects after `ms`. */
  waitFor(what, matches, { from = 0, ms = 15000 } = {}) {
    return this.until(what, () => this.events.slice(from).find(matches), ms)
  }

  /** Resolves with `condition()`'s first truthy value, asked at every event; rejects after `ms`. */
  until(what, condition, ms = 15000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = condition()
        if (found) {
          done()
          resolve(found)
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`night: timed out after ${ms} ms waiting for ${what}; events: ${this.summary()}`))
      }, ms)
      const done = () => {
        clearTimeout(timer)
        this.waiters.delete(check)
      }
      this.waiters.add(check)
      check()
    })
  }

  /** Full checks so far: each emits 'health' (an unhealthy one 'unhealthy' too), a failed one 'error'. */
  checksMade() {
    return this.count('health') + this.count('error')
  }

  /** Waits for `n` more full checks. */
  checks(n) {
    const target = this.checksMade() + n
    return this.until(`${n} checks`, () => this.checksMade() >= target)
  }

  summary() {
    return this.events
      .filter((e) => e.name !== 'health')
      .map((e) => `${e.name}:${e.payload?.kind ?? e.payload?.actions?.map((a) => `${a.type}=${a.result}`).join('+') ?? ''}`)
      .join(', ')
  }
}

/**
 * Records the night into `stateDir` (created 0700); `checksPerPhase` full checks hold each
 * phase (more draw a longer night: the screenshot's). Resolves, once the supervisor has stopped
 * and the incident log is closed (nothing holds a lock any more), with
 * `{ since, until, incidents, events, gpus: 2, phases, rampGpu, lostGpu, hotGpu }`: `since`/`until` the wall-clock span
 * (ms) that holds every check and incident, `incidents` the log's records (`readIncidents`),
 * `events` what the supervisor emitted ({ name, payload, at }), `phases` the start time of
 * each phase by name, and `lostGpu`, `hotGpu`, `rampGpu` the devices each fault hit.
 */
async function recordNight({ stateDir, checksPerPhase = CHECKS_PER_PHASE } = {}) {
  if (typeof stateDir !== 'string' || stateDir === '') throw new TypeError('recordNight: stateDir must be a non-empty path')
  if (!Number.isSafeInteger(checksPerPhase) || checksPerPhase < 1) throw new RangeError(`recordNight: checksPerPhase must be a positive integer, got ${checksPerPhase}`)
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 })
  const standin = new StandinState({ devices: [device(0, BASELINE), device(1, BASELINE)], xid_events: [] })
  const devices = [{ ...BASELINE }, { ...BASELINE }]
  const set = (index, fields) => {
    Object.assign(devices[index], fields)
    standin.write({ devices: devices.map((d, i) => device(i, d)), xid_events: [] })
  }
  // The stand-in reads the variable on every call: this process's addon sees this night's state.
  const previousState = process.env.HPC_HEALTH_STANDIN_STATE
  process.env.HPC_HEALTH_STANDIN_STATE = standin.file
  const h = require('../..')
  const rampGpu = 0
  const lostGpu = 1
  const hotGpu = 1
  const phases = {}
  const since = Date.now()
  let incidentLog = null
  let supervisor = null
  let tape = null
  try {
    incidentLog = new h.IncidentLog({ directory: path.join(stateDir, 'incidents') })
    const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
    const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false })
    // The worker's cache clear frees what the ramp took, as a worker's empty_cache would.
    const memoryRecovery = new h.MemoryRecovery(memoryMonitor, { clearGPUCache: () => set(rampGpu, { memory_used: BASELINE.memory_used }), incidentLog })
    const gpuRecovery = new h.GPURecovery(gpuMonitor, { deviceWaitMs: 10000, incidentLog })
    supervisor = new h.HealthSupervisor({
      memoryMonitor, gpuMonitor, memoryRecovery, gpuRecovery, incidentLog,
      intervalMs: INTERVAL_MS, historyDir: path.join(stateDir, 'history'), historyStepMs: HISTORY_STEP_MS,
    })
    tape = new EventTape(supervisor)
    supervisor.start()
    phases.healthy = Date.now()
    await tape.checks(checksPerPhase)

    // GPU memory climbs past 85 % of the device; the memory recovery's cache clear frees it.
    phases.memoryRamp = Date.now()
    for (const fraction of [0.3, 0.5, 0.7, 0.8]) {
      set(rampGpu, { memory_used: Math.round(fraction * 80 * GiB) })
      await tape.checks(Math.ceil(checksPerPhase / 4))
    }
    let from = tape.events.length
    set(rampGpu, { memory_used: Math.round(0.95 * 80 * GiB) })
    await tape.waitFor('a memory_pressure incident', (e) => e.name === 'incident' && e.payload.kind === 'memory_pressure', { from })
    await tape.waitFor('the memory recovery', (e) => e.name === 'recovery' && e.payload.actions?.some((a) => a.type === 'memory'), { from })
    await tape.checks(checksPerPhase)

    // A GPU falls off the bus and comes back; the device-lost recovery waits for it.
    phases.gpuLost = Date.now()
    from = tape.events.length
    set(lostGpu, { lost: true })
    await tape.waitFor('the GPU_LOST incident', (e) => e.name === 'incident' && e.payload.kind === 'gpu_issue' && JSON.stringify(e.payload).includes('GPU_LOST'), { from })
    await tape.checks(checksPerPhase)
    phases.gpuBack = Date.now()
    set(lostGpu, { lost: false })
    await tape.waitFor('the device-lost recovery', (e) => e.name === 'recovery' && e.payload.actions?.some((a) => a.type === 'device_lost'), { from })
    await tape.checks(checksPerPhase)

    // A GPU runs hot, then cools.
    phases.hot = Date.now()
    from = tape.events.length
    set(hotGpu, { temperature: HOT_C })
    await tape.waitFor('the TEMPERATURE_HIGH incident', (e) => e.name === 'incident' && JSON.stringify(e.payload).includes('TEMPERATURE_HIGH'), { from })
    await tape.checks(checksPerPhase)
    set(hotGpu, { temperature: BASELINE.temperature })

    phases.healthyAgain = Date.now()
    from = tape.events.length
    await tape.waitFor('healthy again', (e) => e.name === 'health' && supervisor.status().state === 'healthy', { from })
    await tape.checks(checksPerPhase)
  } finally {
    await supervisor?.stop()
    await incidentLog?.close()
    if (previousState === undefined) delete process.env.HPC_HEALTH_STANDIN_STATE
    else process.env.HPC_HEALTH_STANDIN_STATE = previousState
    fs.rmSync(standin.dir, { recursive: true, force: true })
  }
  const until = Date.now()
  const incidents = await h.readIncidents(path.join(stateDir, 'incidents'))
  return { since, until, incidents, events: tape.events, gpus: devices.length, phases, rampGpu, lostGpu, hotGpu }
}

module.exports = { recordNight, HISTORY_STEP_MS, INTERVAL_MS, HOT_C }
