'use strict'
// HealthSupervisor between its checks: an Xid or a lost device wakes it at once (no waiting
// for intervalMs, no hysteresis), a hung NVML call makes it unknown and not ready at once,
// stale health makes it not ready, and checks go on while a recovery runs.
const test = require('node:test')
const assert = require('node:assert/strict')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')

const standin = new StandinState({ devices: [device(0), device(1)], xid_events: [] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const h = require('..')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let nextXidId = 1
function healthyState(extra = {}) {
  return { devices: [device(0), device(1)], xid_events: [], ...extra }
}

function setup(options = {}, { watchXid = false, gpu = {} } = {}) {
  const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid })
  const memoryRecovery = new h.MemoryRecovery(memoryMonitor, {})
  const gpuRecovery = new h.GPURecovery(gpuMonitor, { deviceWaitMs: 3000, ...gpu })
  const supervisor = new h.HealthSupervisor({ memoryMonitor, gpuMonitor, memoryRecovery, gpuRecovery, ...options })
  const events = []
  for (const name of ['health', 'unhealthy', 'warning', 'recovery', 'incident', 'error']) {
    supervisor.on(name, (payload) => events.push({ name, payload, at: Date.now() }))
  }
  return { supervisor, events, gpuMonitor }
}

async function waitFor(what, predicate, ms = 5000) {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

/** Waits until the Xid watch is armed on both devices (events before that are not seen). */
async function armed(gpuMonitor) {
  const deadline = Date.now() + 5000
  for (;;) {
    const health = await gpuMonitor.checkGpuHealth()
    if (health.xid_watch?.state === 'watching' && health.xid_watch.devices.length === 2) return
    if (Date.now() > deadline) throw new Error(`the Xid watch did not arm: ${JSON.stringify(health.xid_watch)}`)
    await sleep(20)
  }
}

// At intervalMs 60000 with the default hysteresis (2), the old loop needed 60 s to act.
const SLOW = { intervalMs: 60000, autoRecover: false }

test('an Xid 79 wakes the supervisor: unhealthy within seconds at intervalMs 60000, without hysteresis', async () => {
  standin.write(healthyState())
  const { supervisor, events, gpuMonitor } = setup(SLOW, { watchXid: true })
  await armed(gpuMonitor)
  supervisor.start()
  await waitFor('the first check', () => events.some((e) => e.name === 'health'))
  const injected = Date.now()
  standin.write(healthyState({ xid_events: [{ device: 1, xid: 79, id: nextXidId++ }] }))
  await waitFor('unhealthy', () => events.some((e) => e.name === 'unhealthy'), 5000)
  const unhealthy = events.find((e) => e.name === 'unhealthy')
  assert.ok(unhealthy.payload.issues.some((i) => i.code === 'XID' && i.device === 1 && i.action === 'reboot_node'))
  assert.equal(events.filter((e) => e.name === 'health').length, 2, 'one woken check was enough')
  assert.ok(unhealthy.at >= injected)
  assert.equal(supervisor.status().state, 'unhealthy')
  await supervisor.stop()
  standin.write(healthyState())
})

test('a lost device wakes the supervisor: unhealthy at once, not ready with the GPU named first', async () => {
  standin.write(healthyState())
  const { supervisor, events, gpuMonitor } = setup(SLOW, { watchXid: true })
  await armed(gpuMonitor)
  supervisor.start()
  await waitFor('the first check', () => events.some((e) => e.name === 'health'))
  assert.equal(supervisor.status().ready, true, JSON.stringify(supervisor.status().not_ready_reasons))
  standin.write({ devices: [device(0), device(1, { lost: true })], xid_events: [] })
  // (The previous test's Xid stays in the shared watch's window: look for the lost device.)
  const lost = (e) => e.name === 'unhealthy' && e.payload.issues.some((i) => i.code === 'GPU_LOST' && i.device === 1)
  await waitFor('unhealthy with the lost device', () => events.some(lost), 5000)
  const status = supervisor.status()
  assert.equal(status.ready, false)
  assert.equal(status.not_ready_reasons[0], 'GPU 1 lost')
  await supervisor.stop()
  standin.write(healthyState())
})

test('a hung NVML call: state unknown, not ready and hpc_health_healthy 0 at the first timeout', async () => {
  standin.write(healthyState())
  const { supervisor, events } = setup({ intervalMs: 50, checkTimeoutMs: 300 })
  assert.equal(supervisor.status().last_check_at, null)
  assert.equal(supervisor.status().last_success_at, null)
  supervisor.start()
  await waitFor('a healthy check', () => supervisor.status().state === 'healthy')
  const before = supervisor.status()
  assert.equal(before.ready, true)
  assert.equal(typeof before.last_success_at, 'number')
  assert.match(supervisor.metrics(), /^hpc_health_last_successful_check_timestamp_seconds \d+(\.\d+)?$/m)
  assert.match(supervisor.metrics(), /^hpc_health_healthy 1$/m)
  standin.write(healthyState({ delay_ms: { memory_info: 3000 } }))
  await waitFor('the first timeout', () => events.some((e) => e.name === 'error'), 5000)
  const status = supervisor.status()
  assert.equal(status.state, 'unknown', 'one hung check is enough')
  assert.equal(status.ready, false)
  assert.match(status.not_ready_reasons[0], /^no successful check for \d+ s \(health check did not finish within 300 ms/)
  assert.ok(status.last_check_at >= status.last_success_at)
  assert.equal(events.find((e) => e.name === 'error').payload.state, 'unknown')
  assert.match(supervisor.metrics(), /^hpc_health_healthy 0$/m)
  assert.match(supervisor.metrics(), /^hpc_health_last_check_timestamp_seconds \d+(\.\d+)?$/m)
  await supervisor.stop()
  standin.write(healthyState())
  await sleep(3200) // the hung sample finishes before the next test
})

test('a hung driver holds one sampling thread, not one per check', async () => {
  standin.write(healthyState())
  const threads = () => require('node:fs').readdirSync('/proc/self/task').length
  const { supervisor, events } = setup({ intervalMs: 10, checkTimeoutMs: 30 })
  supervisor.start()
  await waitFor('a healthy check', () => supervisor.status().state === 'healthy')
  const before = threads()
  standin.write(healthyState({ delay_ms: { memory_info: 2000 } }))
  await waitFor('ten timed-out checks', () => events.filter((e) => e.name === 'error').length >= 10, 5000)
  const grown = threads() - before
  await supervisor.stop()
  standin.write(healthyState())
  assert.ok(grown <= 2, `${grown} more threads while the driver hangs`)
  assert.match(events.filter((e) => e.name === 'error').at(-1).payload.message, /previous check is still waiting for the driver/)
  await sleep(2200) // the hung sample finishes before the next test
})

test('health nobody confirmed for staleAfterMs makes the service not ready', async () => {
  standin.write(healthyState())
  // A slow check (no timeout yet) leaves the last success growing old.
  const { supervisor } = setup({ intervalMs: 50, checkTimeoutMs: 10000, staleAfterMs: 200 })
  supervisor.start()
  await waitFor('a healthy check', () => supervisor.status().state === 'healthy')
  standin.write(healthyState({ delay_ms: { memory_info: 600 } }))
  await waitFor('not ready', () => supervisor.status().ready === false, 5000)
  const status = supervisor.status()
  assert.equal(status.state, 'healthy', 'no check has failed yet')
  assert.match(status.not_ready_reasons[0], /^no successful check for \d+ s$/)
  standin.write(healthyState())
  await waitFor('ready again', () => supervisor.status().ready === true, 10000)
  await supervisor.stop()
})

test('checks go on while a recovery runs, and a check during it starts no second one', async () => {
  standin.write(healthyState())
  let reinitializing = 0
  let running = false
  const { supervisor, events } = setup(
    { intervalMs: 50, hysteresis: { unhealthyAfter: 1, healthyAfter: 1 } },
    { gpu: { deviceWaitMs: 5000, reinitialize: async () => { reinitializing++; running = true; await sleep(1500); running = false } } },
  )
  const count = (name) => events.filter((e) => e.name === name).length
  supervisor.start()
  await waitFor('a healthy check', () => supervisor.status().state === 'healthy')
  standin.write({ devices: [device(0), device(1, { lost: true })], xid_events: [] })
  await waitFor('unhealthy', () => count('unhealthy') > 0)
  // The recovery waits up to deviceWaitMs for the device; the old loop checked nothing meanwhile.
  const unhealthyBefore = count('unhealthy')
  await waitFor('checks while the recovery waits for the device', () => count('unhealthy') >= unhealthyBefore + 5, 2000)
  assert.equal(count('recovery'), 0, 'the recovery is still under way')
  standin.write(healthyState())
  await waitFor('the reinitialize hook', () => running, 5000)
  const healthBefore = count('health')
  await waitFor('checks while the hook runs', () => count('health') >= healthBefore + 5, 1400)
  await waitFor('the recovery event', () => count('recovery') > 0, 10000)
  await supervisor.stop()
  assert.equal(count('recovery'), 1, 'single-flight: the checks during the recovery started none')
  assert.equal(reinitializing, 1)
  assert.equal(events.find((e) => e.name === 'recovery').payload.actions[0].type, 'device_lost')
})

test('intake held by a recovery that outlived its episode is released once that recovery ends', async () => {
  // Checks go on during a recovery, so the episode can end (healthy again) while a memory
  // recovery still waits for a hung hook; the pause that recovery leaves must not outlive it.
  standin.write(healthyState())
  const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false })
  let hung = 0
  const memoryRecovery = new h.MemoryRecovery(memoryMonitor, { stepTimeoutMs: 1000, clearGPUCache: () => { hung++; return new Promise(() => {}) } })
  const supervisor = new h.HealthSupervisor({
    memoryMonitor, gpuMonitor, memoryRecovery, intervalMs: 50, fastSampleMs: null, hysteresis: { unhealthyAfter: 1, healthyAfter: 1 },
  })
  const recoveries = []
  supervisor.on('recovery', (payload) => recoveries.push(payload))
  supervisor.start()
  await waitFor('a healthy check', () => supervisor.status().state === 'healthy')
  standin.write(healthyState({ devices: [device(0, { memory_used: Math.floor(0.99 * device(0).memory_total) }), device(1)] }))
  await waitFor('the hook to hang', () => hung > 0)
  assert.equal(supervisor.status().accepting_requests, false, 'the memory recovery holds intake')
  standin.write(healthyState())
  await waitFor('the episode to end while the hook hangs', () => supervisor.status().state === 'healthy', 900)
  await waitFor('the recovery to time out', () => recoveries.length > 0, 5000)
  assert.equal(recoveries[0].actions[0].result, 'failed')
  await waitFor('intake to reopen', () => supervisor.status().accepting_requests, 2000)
  assert.equal(memoryRecovery.pause_incoming, false)
  await supervisor.stop()
})

test('staleAfterMs and checkTimeoutMs are validated', () => {
  const cases = [
    [{ staleAfterMs: 0 }, RangeError, /^staleAfterMs must be an integer in \[1, 2147483647\], got 0$/],
    [{ staleAfterMs: 'x' }, TypeError, /staleAfterMs/],
    [{ intervalMs: 1000, staleAfterMs: 1000 }, RangeError, /^staleAfterMs must be greater than intervalMs \(1000\), got 1000$/],
    [{ checkTimeoutMs: 0.5 }, RangeError, /^checkTimeoutMs must be an integer/],
  ]
  for (const [options, type, message] of cases) {
    assert.throws(() => new h.HealthSupervisor(options), (err) => err instanceof type && message.test(err.message), String(message))
  }
  // The defaults are accepted as written.
  assert.doesNotThrow(() => new h.HealthSupervisor({ intervalMs: 1000, staleAfterMs: 1001, checkTimeoutMs: 10000 }))
})
