'use strict'
// Control inputs over JSON-RPC/MCP with the real supervisor and the stand-in GPU:
// reportAllocatorStats behind authorize, its validation errors as -32602, authorize bounded
// by a timeout (promises and thenables alike), a recovery whose issue stays is not_recovered,
// and stop() (and the example service's SIGTERM) abandoning a device-lost recovery's wait.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { STANDIN_LIBRARY, StandinState, device, GiB } = require('./helpers/standin')
const { startService, stopAll, waitFor } = require('./helpers/service')

const standin = new StandinState({ devices: [device(0), device(1)] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
process.env.HPC_HEALTH_STANDIN_LOG = standin.log
const h = require('..')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
test.after(() => stopAll())

function setup({ gpu = {}, supervisor = {} } = {}) {
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false })
  const gpuRecovery = new h.GPURecovery(gpuMonitor, gpu)
  const sup = new h.HealthSupervisor({ gpuMonitor, gpuRecovery, intervalMs: 20, ...supervisor })
  return { gpuMonitor, gpuRecovery, supervisor: sup }
}

/** Resolves what `promise` resolves, or rejects once `ms` pass: a bound on a wait, not a speed check. */
function within(ms, promise, what) {
  let timer
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms) })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

const rpc = (method, params, id = 1) => JSON.stringify({ jsonrpc: '2.0', id, method, params })
const FORGED = { device: 0, allocated: 0, reserved: 79 * GiB }
const hasFragmentation = (health) => health.issues.some((i) => i.code === 'FRAGMENTATION_HIGH')

test('reportAllocatorStats over JSON-RPC and MCP runs only when authorize says yes', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const { supervisor } = setup()
  await supervisor.checkSystemHealth('full') // NVML shows both devices, so reports for them are taken

  // No authorize, or one that allows only recoverSystem: refused, naming the method, and not recorded.
  const operatorOnly = ({ method }) => method === 'recoverSystem'
  for (const options of [undefined, {}, { authorize: operatorOnly }, { authorize: () => 'yes' }]) {
    const response = await supervisor.handleJsonRpc(rpc('reportAllocatorStats', FORGED), options)
    assert.deepEqual(response.error, { code: -32001, message: 'reportAllocatorStats refused: not authorized' }, JSON.stringify(options))
    const call = { name: 'reportAllocatorStats', arguments: FORGED }
    const mcp = await supervisor.handleJsonRpc(rpc('tools/call', call), options)
    assert.equal(mcp.result.isError, true)
    assert.equal(mcp.result.structuredContent.error.code, -32001)
  }
  assert.equal(hasFragmentation(await supervisor.checkSystemHealth('full')), false, 'a refused report is not counted')

  // A worker's token: authorize sees the method and the params by name.
  const asked = []
  const worker = ({ method, params }) => { asked.push({ method, params }); return method === 'reportAllocatorStats' }
  const accepted = await supervisor.handleJsonRpc(rpc('reportAllocatorStats', { ...FORGED, pid: 4242 }), { authorize: worker })
  assert.deepEqual(accepted.result, { accepted: true })
  assert.deepEqual(asked, [{ method: 'reportAllocatorStats', params: { ...FORGED, pid: 4242 } }])
  assert.equal(hasFragmentation(await supervisor.checkSystemHealth('full')), true)
  const recover = await supervisor.handleJsonRpc(rpc('recoverSystem', { errorType: 'process' }), { authorize: worker })
  assert.equal(recover.error.code, -32001, 'a worker token does not recover')
  assert.equal(recover.error.message, 'recoverSystem refused: not authorized')
})

test('reportAllocatorStats validation errors are -32602 Invalid params over JSON-RPC, and tool results with isError over MCP', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const { supervisor } = setup()
  await supervisor.checkSystemHealth('full')
  const authorize = () => true
  const cases = [
    [{ device: 7, allocated: 1, reserved: 2 }, /^Invalid params: device must be an integer in \[0, 1\], got 7$/],
    [{ device: 0, allocated: 3, reserved: 2 }, /^Invalid params: allocated must be at most reserved/],
    [{ device: 0, allocated: -1, reserved: 2 }, /^Invalid params: allocated must be an integer/],
  ]
  for (const [params, message] of cases) {
    const response = await supervisor.handleJsonRpc(rpc('reportAllocatorStats', params), { authorize })
    assert.equal(response.error.code, -32602, JSON.stringify(response))
    assert.match(response.error.message, message)
    const mcp = await supervisor.handleJsonRpc(rpc('tools/call', { name: 'reportAllocatorStats', arguments: params }), { authorize })
    // MCP 2025-11-25: input validation errors are tool execution errors, which a model can read.
    assert.equal(mcp.result?.isError, true, `MCP: invalid arguments are a tool error: ${JSON.stringify(mcp)}`)
    assert.match(mcp.result.content[0].text, message)
    assert.equal(mcp.result.structuredContent.error.code, -32602)
  }
})

test('authorize: thenables are awaited like promises; one that never settles is refused after authorizeTimeoutMs', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const { supervisor } = setup()
  await supervisor.checkSystemHealth('full')
  const report = rpc('reportAllocatorStats', { device: 1, allocated: 1, reserved: 2 })
  const verdicts = [
    ['thenable true', () => ({ then(resolve) { resolve(true) } }), true],
    ['thenable true, later', () => ({ then(resolve) { setTimeout(() => resolve(true), 10) } }), true],
    ['thenable false', () => ({ then(resolve) { resolve(false) } }), false],
    ['thenable that rejects', () => ({ then(_, reject) { reject(new Error('no')) } }), false],
    ['thenable whose then throws', () => ({ then() { throw new Error('broken') } }), false],
    ['promise true', async () => true, true],
    ['promise of a truthy non-boolean', async () => 1, false],
  ]
  for (const [label, authorize, allowed] of verdicts) {
    const response = await within(5000, supervisor.handleJsonRpc(report, { authorize }), label)
    assert.equal(response.error?.code, allowed ? undefined : -32001, `${label}: ${JSON.stringify(response)}`)
  }

  const hanging = [
    ['a promise that never settles', () => new Promise(() => {})],
    ['a thenable that never calls back', () => ({ then() {} })],
  ]
  for (const [label, authorize] of hanging) {
    const response = await within(5000, supervisor.handleJsonRpc(report, { authorize, authorizeTimeoutMs: 100 }), label)
    assert.deepEqual(response.error, { code: -32001, message: 'reportAllocatorStats refused: authorize did not answer within 100 ms' }, label)
  }

  assert.throws(() => supervisor.handleJsonRpc(report, { authorizeTimeoutMs: 0 }), { name: 'RangeError', message: /^authorizeTimeoutMs must be an integer in \[1, 2147483647\], got 0$/ })
  assert.throws(() => supervisor.handleJsonRpc(report, { authorizeTimeoutMs: 1.5 }), { name: 'RangeError' })
  assert.throws(() => supervisor.handleJsonRpc(report, { authorizeTimeoutMs: '100' }), { name: 'TypeError', message: /authorizeTimeoutMs/ })
})

test('a recovery after which its issue is still there is not_recovered; one that clears it is recovered', async () => {
  standin.write({ devices: [device(0), device(1)] })
  let emptied = 0
  const { gpuMonitor, gpuRecovery, supervisor } = setup({ gpu: { emptyCache: () => { emptied++ } } })
  await supervisor.checkSystemHealth('full')
  gpuMonitor.reportAllocatorStats(FORGED) // a fragmentation that clearing the cache does not change
  const health = await supervisor.checkSystemHealth('full')
  assert.ok(hasFragmentation(health))
  const actions = await supervisor.triggerRecovery(health)
  assert.deepEqual(actions.map((a) => [a.type, a.issue, a.device, a.result]), [['out_of_memory', 'FRAGMENTATION_HIGH', 0, 'not_recovered']])
  assert.equal(emptied, 1)
  const outcome = gpuRecovery.lastOutcome
  assert.equal(outcome.result, 'not_recovered')
  assert.match(outcome.after.problems.join('\n'), /FRAGMENTATION_HIGH still present/)
  assert.equal(await gpuRecovery.recoverFromOom(), false, 'GPURecovery alone says the same')

  // The worker's cache really is emptied, and it reports so: recovered.
  const { gpuMonitor: monitor2, supervisor: supervisor2 } = setup({
    gpu: { emptyCache: () => { monitor2.reportAllocatorStats({ device: 0, allocated: 0, reserved: 0 }) } },
  })
  await supervisor2.checkSystemHealth('full')
  monitor2.reportAllocatorStats(FORGED)
  const cleared = await supervisor2.triggerRecovery(await supervisor2.checkSystemHealth('full'))
  assert.deepEqual(cleared.map((a) => [a.type, a.result]), [['out_of_memory', 'recovered']])
})

test('stop() during a device-lost recovery abandons the wait and records the recovery as interrupted', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-interrupt-'))
  const incidentLog = new h.IncidentLog({ directory: path.join(dir, 'incidents') })
  standin.write({ devices: [device(0), device(1)] })
  const deviceWaitMs = 600000
  const { gpuRecovery, supervisor } = setup({
    gpu: { deviceWaitMs, incidentLog },
    supervisor: { hysteresis: { unhealthyAfter: 1, healthyAfter: 1 } },
  })
  await supervisor.checkSystemHealth('full') // NVML has shown both devices
  const initsBefore = standin.logLines().filter((l) => l.startsWith('init')).length
  standin.write({ devices: [device(0), device(1, { lost: true })] })
  supervisor.start()
  // The recovery re-opens NVML (an init in the stand-in's log), then waits for device 1.
  await within(10000, (async () => {
    while (standin.logLines().filter((l) => l.startsWith('init')).length === initsBefore) await sleep(10)
  })(), 'the device-lost recovery')
  await sleep(200)
  await within(10000, supervisor.stop(), `stop() (deviceWaitMs is ${deviceWaitMs})`)

  const outcome = gpuRecovery.lastOutcome
  assert.equal(outcome.type, 'device_lost')
  assert.equal(outcome.result, 'interrupted')
  const wait = outcome.steps.find((s) => s.name === 'wait_for_devices')
  assert.equal(wait.status, 'interrupted')
  assert.deepEqual(outcome.error && [outcome.error.code, outcome.error.step], ['ERR_INTERRUPTED', 'wait_for_devices'])
  const finished = (await incidentLog.read({ kinds: ['recovery_finished'] })).at(-1)
  assert.equal(finished.details.result, 'interrupted')
  assert.equal(finished.details.id, outcome.id)
  assert.match(supervisor.metrics(), /hpc_health_recoveries_total\{type="device_lost",result="interrupted"\} 1/)

  // An operator's recovery (no loop running) is interrupted by stop() too.
  const operator = supervisor.recoverSystem('gpu')
  await sleep(300)
  await supervisor.stop()
  const action = await within(10000, operator, 'recoverSystem after stop()')
  assert.deepEqual([action.type, action.result], ['device_lost', 'interrupted'])
  await incidentLog.close()
  standin.write({ devices: [device(0), device(1)] })
})

test('stop() during a health check hung in the driver does not wait out checkTimeoutMs', async () => {
  const hangMs = 8000
  standin.write({ devices: [device(0)], delay_ms: { memory_info: hangMs } })
  const { supervisor } = setup({ supervisor: { checkTimeoutMs: 60000 } })
  const events = []
  supervisor.on('health', (payload) => events.push(payload))
  supervisor.start()
  await sleep(200) // the first check is now waiting on the driver
  await within(hangMs / 2, supervisor.stop(), `stop() (the driver answers after ${hangMs} ms)`)
  assert.equal(supervisor.status().running, false)
  assert.equal(supervisor.status().checks, 0, 'the abandoned check is not counted')
  assert.deepEqual(events, [])
  standin.write({ devices: [device(0), device(1)] })
})

test('the example service: SIGTERM during a device-lost recovery exits without waiting out deviceWaitMs', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const stateDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-service-sigterm-')), 'var')
  const service = await startService(standin.env({
    HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY, HPC_HEALTH_STATE_DIR: stateDir, HPC_HEALTH_INTERVAL_MS: '100',
  }))
  await waitFor('a healthy check (NVML has shown both devices)', () => / check healthy /.test(service.output))
  const inits = () => standin.logLines().filter((l) => l.startsWith('init')).length
  const initsBefore = inits()
  standin.write({ devices: [device(0), device(1, { lost: true })] })
  // The recovery re-opens NVML (an init in the stand-in's log), then waits for device 1
  // for the default deviceWaitMs, 30 s.
  await waitFor('the device-lost recovery', () => inits() > initsBefore)
  await sleep(200)
  service.child.kill('SIGTERM')
  const { code } = await within(15000, service.exited, 'the service to exit after SIGTERM')
  assert.equal(code, 0, service.output)
  const log = new h.IncidentLog({ directory: path.join(stateDir, 'incidents') })
  const finished = (await log.read({ kinds: ['recovery_finished'] })).at(-1)
  assert.deepEqual([finished.details.type, finished.details.result], ['device_lost', 'interrupted'])
  await log.close()
  standin.write({ devices: [device(0), device(1)] })
  fs.rmSync(path.dirname(stateDir), { recursive: true, force: true })
})
