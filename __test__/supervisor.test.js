'use strict'
// HealthSupervisor end to end with the stand-in GPU: a temperature spike, a lost device and
// its return, a budget that stops a storm, monitoring failures, events, stop and exit.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { STANDIN_LIBRARY, StandinState, device, runChild, GiB } = require('./helpers/standin')

const standin = new StandinState({ devices: [device(0), device(1)] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const h = require('..')
const PACKAGE = JSON.stringify(path.join(__dirname, '..'))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function setup(options = {}, hooks = {}, gpuOptions = {}) {
  const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false, ...gpuOptions })
  const memoryRecovery = new h.MemoryRecovery(memoryMonitor, hooks.memory || {})
  const gpuRecovery = new h.GPURecovery(gpuMonitor, { deviceWaitMs: 3000, ...(hooks.gpu || {}) })
  const supervisor = new h.HealthSupervisor({ memoryMonitor, gpuMonitor, memoryRecovery, gpuRecovery, intervalMs: 20, ...options })
  const events = []
  for (const name of ['health', 'unhealthy', 'warning', 'recovery', 'incident', 'error']) {
    supervisor.on(name, (payload) => events.push({ name, payload }))
  }
  return { supervisor, events, memoryRecovery, gpuRecovery }
}

async function waitFor(what, predicate, ms = 5000) {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

test('checkSystemHealth: quick and full, with every field', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const { supervisor } = setup()
  const quick = await supervisor.checkSystemHealth()
  assert.equal(quick.check_type, 'quick')
  assert.equal(quick.healthy, true)
  assert.equal(quick.accepting_requests, true)
  assert.ok(quick.duration_ms >= 0 && quick.timestamp <= Date.now())
  assert.equal(quick.gpu.devices[0].temperature, 40)
  assert.equal(quick.gpu.devices[0].power_watts, null, 'quick reads memory and temperature only')
  assert.equal(typeof quick.memory.system_pressure, 'boolean')
  const full = await supervisor.checkSystemHealth('full')
  assert.equal(full.check_type, 'full')
  assert.equal(full.gpu.devices[0].power_watts, 70)
  assert.deepEqual(full.issues, [])
  await assert.rejects(async () => supervisor.checkSystemHealth('deep'), { name: 'RangeError', message: "checkType must be 'quick' or 'full', got \"deep\"" })
  assert.throws(() => supervisor.checkSystemHealth(1), { name: 'TypeError' })
})

test('a temperature spike: unhealthy after two checks, intake paused, healthy again once it cools', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const { supervisor, events, memoryRecovery } = setup()
  supervisor.start()
  supervisor.start() // idempotent
  await waitFor('a healthy check', () => events.some((e) => e.name === 'health' && e.payload.healthy))
  standin.write({ devices: [device(0, { temperature: 91 }), device(1)] })
  await waitFor('the recovery', () => events.some((e) => e.name === 'recovery'))
  const unhealthyChecks = events.filter((e) => e.name === 'health' && !e.payload.healthy)
  assert.ok(unhealthyChecks.length >= 2, 'one noisy sample does not start an episode')
  assert.equal(supervisor.status().state, 'unhealthy')
  assert.equal(supervisor.status().accepting_requests, false)
  assert.equal(memoryRecovery.pause_incoming, false, 'the pause is the supervisor\'s, not a memory recovery')
  const recovery = events.find((e) => e.name === 'recovery').payload
  assert.deepEqual(recovery.actions.map((a) => [a.type, a.issue, a.device, a.result]), [['pause_intake', 'TEMPERATURE_HIGH', 0, 'paused']])
  assert.ok(events.some((e) => e.name === 'incident' && e.payload.kind === 'health_unhealthy'))
  assert.ok(events.some((e) => e.name === 'warning' && e.payload.code === 'TEMPERATURE_HIGH'))
  standin.write({ devices: [device(0), device(1)] })
  await waitFor('health returns', () => supervisor.status().state === 'healthy')
  assert.equal(supervisor.status().accepting_requests, true)
  // The state turns healthy before the incident is on disk, and its event follows the write.
  await waitFor('the health_recovered incident', () => events.some((e) => e.name === 'incident' && e.payload.kind === 'health_recovered'))
  assert.equal(events.filter((e) => e.name === 'recovery').length, 1, 'a pause in effect is not repeated')
  await supervisor.stop()
})

test('a lost device: GPURecovery device_lost runs, and health returns when the device does', async () => {
  standin.write({ devices: [device(0), device(1)] })
  let reinitialized = 0
  const { supervisor, events, gpuRecovery } = setup({}, { gpu: { reinitialize: () => { reinitialized++ } } })
  await supervisor.checkSystemHealth('full') // NVML shows both devices
  standin.write({ devices: [device(0), device(1, { lost: true })] })
  setTimeout(() => standin.write({ devices: [device(0), device(1)] }), 400)
  supervisor.start()
  await waitFor('the recovery', () => events.some((e) => e.name === 'recovery'))
  const action = events.find((e) => e.name === 'recovery').payload.actions[0]
  assert.deepEqual([action.type, action.issue, action.device, action.result], ['device_lost', 'GPU_LOST', 1, 'recovered'])
  assert.equal(reinitialized, 1)
  assert.equal(gpuRecovery.lastOutcome.type, 'device_lost')
  await waitFor('health returns', () => supervisor.status().state === 'healthy')
  await supervisor.stop()
})

test('the budget stops a storm: past it the supervisor stops acting, says so, and keeps intake paused', async () => {
  standin.write({ devices: [device(0, { memory_used: 79 * GiB }), device(1)] }) // GPU memory pressure that no hook clears
  let cleared = 0
  const { supervisor, events, memoryRecovery } = setup(
    { recoveryBudget: { max: 2, windowMs: 60000 }, hysteresis: { unhealthyAfter: 1, healthyAfter: 1 } },
    { memory: { clearGPUCache: () => { cleared++ } } },
  )
  supervisor.start()
  await waitFor('the budget to run out', () => events.some((e) => e.name === 'incident' && e.payload.kind === 'recovery_budget_exhausted'), 15000)
  await sleep(200)
  await supervisor.stop()
  assert.equal(cleared, 2, 'two recoveries, then none')
  const status = supervisor.status()
  assert.deepEqual(status.budget, { max: 2, window_ms: 60000, used: 2, exhausted: true })
  assert.equal(status.accepting_requests, false)
  assert.equal(memoryRecovery.pause_incoming, true)
  assert.ok(status.next_recovery_not_before > 0, 'failed attempts back off')
  assert.equal(events.filter((e) => e.payload.kind === 'recovery_budget_exhausted').length, 1, 'reported once')
  const metrics = supervisor.metrics()
  assert.match(metrics, /hpc_health_recoveries_total\{type="memory",result="not_recovered"\} 2/)
  standin.write({ devices: [device(0), device(1)] })
})

test('an Xid that asks for a restart calls restartProcess once per event, not on every check; without the hook it is an operator action', async () => {
  const xidEvents = []
  const emitXid = (deviceIndex, xid) => {
    xidEvents.push({ device: deviceIndex, xid, id: 1000 + xidEvents.length })
    standin.write({ devices: [device(0), device(1)], xid_events: xidEvents })
  }
  standin.write({ devices: [device(0), device(1)], xid_events: [] })
  let restarted = 0
  const fast = { hysteresis: { unhealthyAfter: 1, healthyAfter: 1 } }
  const { supervisor, events } = setup({ ...fast, restartProcess: () => { restarted++ } }, {}, { watchXid: true })
  for (let armed = false; !armed; await sleep(10)) {
    armed = (await supervisor.checkSystemHealth('full')).gpu.xid_watch.state === 'watching'
  }
  supervisor.start()
  emitXid(1, 94)
  await waitFor('the restart', () => restarted === 1)
  const checksAfter = supervisor.status().checks
  await waitFor('twenty more checks', () => supervisor.status().checks >= checksAfter + 20)
  assert.equal(restarted, 1, 'the Xid still in the window does not ask again')
  assert.equal(supervisor.status().state, 'unhealthy', 'it is still reported')
  emitXid(1, 94) // a new event after the restart is a new fault
  await waitFor('the second restart', () => restarted === 2)
  await sleep(300)
  assert.equal(restarted, 2)
  assert.ok(!events.some((e) => e.name === 'incident' && e.payload.kind === 'recovery_budget_exhausted'))
  assert.deepEqual(
    events.filter((e) => e.name === 'recovery').map((e) => e.payload.actions.map((a) => [a.type, a.issue, a.device, a.result])),
    [[['process', 'XID', 1, 'recovered']], [['process', 'XID', 1, 'recovered']]],
  )
  await supervisor.stop()

  // The same Xid with no restartProcess hook: an operator must restart the application.
  const bare = setup(fast, {}, { watchXid: true })
  bare.supervisor.start()
  await waitFor('the operator action', () => bare.supervisor.status().operator_actions.length === 1)
  await sleep(300)
  await bare.supervisor.stop()
  const status = bare.supervisor.status()
  assert.deepEqual(status.operator_actions.map((a) => [a.code, a.device, a.action]), [['XID', 1, 'restart_app']])
  assert.equal(status.accepting_requests, false)
  assert.equal(bare.events.filter((e) => e.name === 'recovery').length, 1, 'asked once, not on every check')
  assert.equal(bare.events.filter((e) => e.name === 'incident' && e.payload.kind === 'operator_action_required').length, 1)
  standin.write({ devices: [device(0), device(1)] })
})

test('a check that hangs is a monitoring failure: error events, then state unknown, and no recovery on a guess', async () => {
  standin.write({ devices: [device(0, { lost: true }), device(1)], delay_ms: { memory_info: 400 } })
  const { supervisor, events } = setup({ checkTimeoutMs: 100, hysteresis: { unhealthyAfter: 1, healthyAfter: 1 } })
  supervisor.start()
  await waitFor('three failures', () => events.filter((e) => e.name === 'error').length >= 3, 10000)
  await supervisor.stop()
  assert.equal(supervisor.status().state, 'unknown')
  assert.equal(events.filter((e) => e.name === 'recovery').length, 0)
  assert.match(events.find((e) => e.name === 'error').payload.message, /did not finish within 100 ms/)
  assert.ok(events.some((e) => e.name === 'incident' && e.payload.kind === 'monitoring_error'))
  assert.ok(supervisor.status().check_failures >= 3)
  standin.write({ devices: [device(0), device(1)] })
  await sleep(500) // let the hung sampling threads finish before the next test
})

test('stop resolves when no more events come; off removes a listener', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const { supervisor, events } = setup()
  let extra = 0
  const listener = () => { extra++ }
  supervisor.on('health', listener)
  supervisor.start()
  await waitFor('some checks', () => extra >= 3)
  supervisor.off('health', listener)
  const before = extra
  await sleep(100)
  assert.equal(extra, before, 'the removed listener hears nothing more')
  await supervisor.stop()
  await supervisor.stop() // idempotent
  const count = events.length
  await sleep(200)
  assert.equal(events.length, count, 'no events after stop resolved')
  assert.equal(supervisor.status().running, false)
  assert.throws(() => supervisor.on('tick', () => {}), { name: 'RangeError' })
  assert.throws(() => supervisor.on('health', 'x'), { name: 'TypeError', message: 'listener must be a function, got a string' })
})

test('triggerRecovery and recoverSystem', async () => {
  standin.write({ devices: [device(0), device(1)] })
  let restarted = 0
  const { supervisor } = setup({ restartProcess: () => { restarted++ } })
  const actions = await supervisor.triggerRecovery({
    issues: [
      { code: 'XID', severity: 'fail', device: 1, message: 'Xid 94', action: 'restart_app' },
      { code: 'ECC_UNCORRECTED', severity: 'fail', device: 0, message: 'ecc', action: 'reset_gpu' },
      { code: 'THERMAL_THROTTLE', severity: 'warn', device: 0, message: 'hot', action: 'none' },
    ],
  })
  assert.deepEqual(actions.map((a) => [a.type, a.result]), [['process', 'recovered'], ['operator', 'paused']])
  assert.equal(restarted, 1)
  const status = supervisor.status()
  assert.equal(status.accepting_requests, false)
  assert.deepEqual(status.operator_actions.map((a) => [a.code, a.device, a.action]), [['ECC_UNCORRECTED', 0, 'reset_gpu']])
  assert.deepEqual(await supervisor.recoverSystem('process'), { type: 'process', issue: null, device: null, result: 'recovered', detail: 'requested by an operator' })
  assert.equal((await supervisor.recoverSystem('memory')).type, 'memory')
  assert.equal((await supervisor.recoverSystem('gpu')).type, 'out_of_memory')
  assert.throws(() => supervisor.recoverSystem('disk'), { name: 'RangeError', message: 'errorType must be \'memory\', \'gpu\' or \'process\', got "disk"' })
  assert.throws(() => supervisor.triggerRecovery({ issues: [{ code: 'NOPE', severity: 'fail', action: 'none', message: '' }] }), { name: 'RangeError' })
  assert.throws(() => supervisor.triggerRecovery(null), { name: 'TypeError' })
})

test('constructor input is validated', () => {
  const cases = [
    [{ intervalMs: 0 }, RangeError, /^intervalMs must be an integer in \[1, 2147483647\], got 0$/],
    [{ memoryMonitor: {} }, TypeError, /^memoryMonitor must be a MemoryMonitor, got an object$/],
    [{ recoveryBudget: { max: -1 } }, RangeError, /^recoveryBudget\.max must be an integer/],
    [{ recoveryBudget: { tries: 1 } }, TypeError, /unknown option 'tries'/],
    [{ autoRecover: 1 }, TypeError, /^autoRecover must be a boolean, got 1$/],
    [{ checkpointIntervalMs: 1000 }, TypeError, /checkpointIntervalMs needs a checkpointManager/],
    [{ restartProcess: true }, TypeError, /^restartProcess must be a function, got a boolean$/],
    [{ hysteresis: { unhealthyAfter: 0 } }, RangeError, /hysteresis\.unhealthyAfter/],
    [{ interval: 5 }, TypeError, /unknown option 'interval'/],
  ]
  for (const [options, type, message] of cases) {
    assert.throws(() => new h.HealthSupervisor(options), (err) => err instanceof type && message.test(err.message), String(message))
  }
})

test('a process that started a supervisor exits on its own', () => {
  const result = runChild(`
    const h = require(${PACKAGE})
    const s = new h.HealthSupervisor({ memoryMonitor: new h.MemoryMonitor(), intervalMs: 10 })
    s.on('health', () => {})
    s.start()
    s.checkSystemHealth().then((r) => console.log(JSON.stringify(r.healthy !== undefined)))
  `, standin.env())
  assert.equal(result, true)
})
