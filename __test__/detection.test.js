'use strict'
// Detection between the full checks, at intervalMs 60000: fast sampling confirms a memory
// crossing in two samples and starts the episode at once; the exhaustion forecast warns
// before the threshold is crossed and holds intake until memory is freed; a sawtooth
// allocator raises no forecast. The stand-in NVML's memory is driven through its state file.
const test = require('node:test')
const assert = require('node:assert/strict')
const { STANDIN_LIBRARY, StandinState, device, GiB } = require('./helpers/standin')

const standin = new StandinState({ devices: [device(0), device(1)], xid_events: [] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const h = require('..')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const TOTAL = 80 * GiB
// Host memory stays out of it: only the GPUs' memory is driven.
const THRESHOLDS = { gpu_memory: 0.9, system_memory: 0.99 }
const SLOW = { intervalMs: 60000, autoRecover: false }

function gpus(used0 = 1 * GiB, used1 = 1 * GiB) {
  return { devices: [device(0, { memory_used: Math.round(used0) }), device(1, { memory_used: Math.round(used1) })], xid_events: [] }
}

function setup(options = {}) {
  const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, thresholds: THRESHOLDS })
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const supervisor = new h.HealthSupervisor({ memoryMonitor, gpuMonitor, ...SLOW, ...options })
  const events = []
  for (const name of ['health', 'unhealthy', 'warning', 'recovery', 'incident', 'error']) {
    supervisor.on(name, (payload) => events.push({ name, payload, at: Date.now() }))
  }
  return { supervisor, events }
}

async function waitFor(what, predicate, ms) {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(20)
  }
}

const forecastWarnings = (events, device) =>
  events.filter((e) => e.name === 'warning' && e.payload.code === 'MEMORY_EXHAUSTION_FORECAST' && e.payload.device === device)

/** Rewrites GPU memory every 250 ms from `usedAt(elapsed ms)` until stopped. */
function drive(usedAt) {
  const started = Date.now()
  let stopped = false
  const done = (async () => {
    while (!stopped) {
      standin.write(gpus(...usedAt(Date.now() - started)))
      await sleep(250)
    }
  })()
  return async () => { stopped = true; await done }
}

test('a GPU memory step to 99% reaches unhealthy within seconds at intervalMs 60000 (fast sampling, no hysteresis wait)', async () => {
  standin.write(gpus())
  const { supervisor, events } = setup()
  supervisor.start()
  await waitFor('the first check', () => events.some((e) => e.name === 'health'), 5000)
  standin.write(gpus(1 * GiB, 0.99 * TOTAL))
  await waitFor('unhealthy', () => events.some((e) => e.name === 'unhealthy'), 8000)
  const unhealthy = events.find((e) => e.name === 'unhealthy')
  assert.ok(unhealthy.payload.issues.some((i) => i.code === 'GPU_MEMORY_PRESSURE' && i.device === 1), JSON.stringify(unhealthy.payload))
  // The first full check that saw the pressure started the episode: no second one under the hysteresis.
  const pressured = events.filter((e) => e.name === 'health' && e.payload.issues.some((i) => i.code === 'GPU_MEMORY_PRESSURE'))
  assert.equal(pressured.length, 1)
  assert.equal(supervisor.status().state, 'unhealthy')
  assert.equal(supervisor.status().detection.fast_sample_ms, 1000)
  await supervisor.stop()
  standin.write(gpus())
})

test('a ramp raises MEMORY_EXHAUSTION_FORECAST as a warning before the threshold, pauses intake until memory is freed; preemptivePause: false warns without pausing', async () => {
  standin.write(gpus())
  const pausing = setup()
  const warnOnly = setup({ preemptivePause: false })
  pausing.supervisor.start()
  warnOnly.supervisor.start()
  await waitFor('the first checks', () => [pausing, warnOnly].every((s) => s.events.some((e) => e.name === 'health')), 5000)
  assert.equal(pausing.supervisor.status().accepting_requests, true)
  // 2 GiB/s from 1 GiB: the 90% threshold (72 GiB) is crossed after about 35 s.
  let used = 1 * GiB
  const stopRamp = drive((ms) => [(used = 1 * GiB + (2 * GiB * ms) / 1000), 1 * GiB])
  try {
    await waitFor('the forecast warning', () => forecastWarnings(pausing.events, 0).length > 0, 28000)
    const atWarning = used
    await waitFor('the second supervisor\'s warning', () => forecastWarnings(warnOnly.events, 0).length > 0, 3000)
    assert.ok(atWarning < THRESHOLDS.gpu_memory * TOTAL, `warned at ${atWarning / GiB} GiB, after the threshold`)
    const warning = forecastWarnings(pausing.events, 0)[0].payload
    assert.equal(warning.severity, 'warn')
    assert.equal(warning.action, 'none')
    assert.ok(Number.isInteger(warning.eta_ms) && warning.eta_ms > 0 && warning.eta_ms < 60000, JSON.stringify(warning))
    assert.match(warning.message, /^GPU 0 memory full in ~\d+ s/)
    // The warning holds intake (preemptivePause), and says why.
    const status = pausing.supervisor.status()
    assert.equal(status.accepting_requests, false)
    assert.equal(status.ready, false)
    assert.match(status.paused_reasons.forecast, /GPU 0 memory full in ~\d+ s/)
    assert.ok(status.not_ready_reasons.some((r) => /^forecast: GPU 0 memory full in ~\d+ s/.test(r)), JSON.stringify(status.not_ready_reasons))
    assert.deepEqual(status.detection.forecasts.map((f) => f.device), [0])
    // The forecast stands in every health's issues; it is a warning, so health stays healthy.
    const health = await pausing.supervisor.checkSystemHealth('quick')
    assert.ok(health.issues.some((i) => i.code === 'MEMORY_EXHAUSTION_FORECAST' && i.device === 0 && i.severity === 'warn'))
    assert.equal(health.healthy, true)
    assert.ok(!pausing.events.some((e) => e.name === 'unhealthy' || e.name === 'recovery'), 'a forecast starts no recovery')
    // Without preemptivePause: the same warning, intake open.
    assert.equal(warnOnly.supervisor.status().accepting_requests, true)
    assert.equal(warnOnly.supervisor.status().paused_reasons.forecast, undefined)
  } finally {
    await stopRamp()
  }
  // Memory freed: the forecast clears and the pause lifts.
  standin.write(gpus())
  await waitFor('the pause to lift', () => pausing.supervisor.status().accepting_requests, 8000)
  assert.deepEqual(pausing.supervisor.status().detection.forecasts, [])
  assert.equal(pausing.supervisor.status().ready, true, JSON.stringify(pausing.supervisor.status().not_ready_reasons))
  await Promise.all([pausing.supervisor.stop(), warnOnly.supervisor.stop()])
})

test('a sawtooth allocator (2 s period to the same peak, 20 s) raises no forecast and keeps intake open', async () => {
  standin.write(gpus())
  const { supervisor, events } = setup()
  supervisor.start()
  await waitFor('the first check', () => events.some((e) => e.name === 'health'), 5000)
  // 10 GiB to 60 GiB (75%, under the threshold) in 2 s, freed, again.
  const stop = drive((ms) => [10 * GiB + 50 * GiB * ((ms % 2000) / 2000), 1 * GiB])
  let paused = false
  const forecasts = new Set()
  const deadline = Date.now() + 20000
  while (Date.now() < deadline) {
    const status = supervisor.status()
    if (!status.accepting_requests) paused = true
    for (const f of status.detection.forecasts) forecasts.add(f.device)
    await sleep(200)
  }
  await stop()
  assert.equal(supervisor.status().detection.fast_sample_ms, 1000, 'the fast samples saw the sawtooth')
  assert.deepEqual(forecastWarnings(events, 0), [])
  assert.deepEqual([...forecasts], [])
  assert.equal(paused, false)
  assert.ok(!events.some((e) => e.name === 'unhealthy'))
  await supervisor.stop()
  standin.write(gpus())
})

test('the detection options are validated and shown in status().detection', () => {
  const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, thresholds: THRESHOLDS })
  const make = (options) => new h.HealthSupervisor({ memoryMonitor, ...options })
  const rangeError = (options, pattern) => assert.throws(() => make(options), (e) => e instanceof RangeError && pattern.test(e.message), JSON.stringify(options))
  const typeError = (options, pattern) => assert.throws(() => make(options), (e) => e instanceof TypeError && pattern.test(e.message), JSON.stringify(options))
  rangeError({ fastSampleMs: 10 }, /fastSampleMs/)
  rangeError({ fastSampleMs: 1000.5 }, /fastSampleMs/)
  rangeError({ fastSampleMs: 70000 }, /fastSampleMs must be at most intervalMs \(60000\)/)
  rangeError({ intervalMs: 500, fastSampleMs: 1000 }, /fastSampleMs must be at most intervalMs \(500\)/)
  typeError({ fastSampleMs: '1000' }, /fastSampleMs must be a number/)
  typeError({ fastSampleMs: NaN }, /fastSampleMs/)
  rangeError({ forecastHorizonMs: 5000 }, /forecastHorizonMs/)
  rangeError({ forecastHorizonMs: Infinity }, /forecastHorizonMs/)
  typeError({ forecastHorizonMs: '60000' }, /forecastHorizonMs must be a number/)
  typeError({ preemptivePause: 'yes' }, /preemptivePause must be a boolean/)
  assert.equal(make({}).status().detection.fast_sample_ms, 1000)
  assert.equal(make({ fastSampleMs: 250 }).status().detection.fast_sample_ms, 250)
  assert.equal(make({ fastSampleMs: null }).status().detection.fast_sample_ms, null)
  // The default never samples slower than the checks.
  assert.equal(make({ intervalMs: 400 }).status().detection.fast_sample_ms, 400)
  // Without a memoryMonitor there is nothing to sample.
  assert.equal(new h.HealthSupervisor({}).status().detection.fast_sample_ms, null)
  const detection = make({ forecastHorizonMs: 30000, preemptivePause: false }).status().detection
  assert.deepEqual(Object.keys(detection).sort(), ['fast_sample_ms', 'forecasts', 'pressure_sources'])
  assert.deepEqual(detection.forecasts, [])
  assert.ok(Array.isArray(detection.pressure_sources))
})
