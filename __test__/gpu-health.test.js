'use strict'
// GPUHealthMonitor through the real nvml-wrapper path against the stand-in libnvidia-ml.so:
// every rule, and each transition back to healthy.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { STANDIN_LIBRARY, StandinState, device, runChild, GiB } = require('./helpers/standin')

const standin = new StandinState({ devices: [device(0), device(1)] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const { GPUHealthMonitor } = require('..')
const PACKAGE = JSON.stringify(path.join(__dirname, '..'))

// Xid watching has its own test file; here it would only add a thread.
const monitor = (options = {}) => new GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false, ...options })
const issueCodes = (health) => health.issues.map((i) => `${i.code}/${i.severity}/${i.action}@${i.device}`)

test('two healthy devices: every field of the contract, status pass', async () => {
  standin.write({ devices: [device(0), device(1, { temperature: 55, utilization_gpu: 93, power_usage_mw: 350500 })] })
  const health = await monitor().checkGpuHealth()
  assert.equal(health.status, 'pass')
  assert.equal(health.healthy, true)
  assert.deepEqual(health.issues, [])
  assert.equal(health.gpu_available, true)
  assert.equal(health.gpu_error, null)
  assert.equal(health.temperature, 55, 'the hottest device')
  assert.equal(health.memory_fragmentation, 0, 'nothing reported yet')
  assert.equal(health.memory_allocated, 0)
  assert.equal(health.memory_reserved, 0)
  assert.equal(health.xid_watch, null, 'Xid watching is off')
  assert.deepEqual(health.devices[1], {
    index: 1, uuid: device(1).uuid, name: device(1).name, status: 'pass',
    temperature: 55, slowdown_temperature: 87, shutdown_temperature: 92,
    memory_used: 1 * GiB, memory_total: 80 * GiB, utilization: 93, power_watts: 350.5, power_limit_watts: 700,
    throttle_reasons: [], ecc_uncorrected: 0, retired_pages_pending: false,
    remapped_rows: { correctable: 0, uncorrectable: 0, pending: false, failure: false },
    xid_errors: [], lost: false, allocator: null, error: null,
  })
  assert.equal(await monitor().isGpuHealthy(), true)
})

test('each rule fails or warns, and health returns when the cause clears', async () => {
  const m = monitor()
  const cases = [
    [{ temperature: 80 }, ['TEMPERATURE_HIGH/fail/none@1'], false],
    [{ temperature: 79 }, [], true],
    [{ throttle_reasons: 0x20 }, ['THERMAL_THROTTLE/warn/none@1'], true],
    [{ throttle_reasons: 0x40 | 0x8 }, ['THERMAL_THROTTLE/warn/none@1'], true],
    [{ throttle_reasons: 0x4 | 0x1 }, [], true], // at its power cap, or idle: normal
    [{ throttle_reasons: 0x80 }, ['POWER_BRAKE/warn/none@1'], true],
    [{ ecc_uncorrected_volatile: 3 }, ['ECC_UNCORRECTED/fail/reset_gpu@1'], false],
    [{ retired_pages_pending: true }, ['RETIRED_PAGES_PENDING/warn/reset_gpu@1'], true],
    [{ remapped_rows: { correctable: 0, uncorrectable: 2, pending: true, failure: false } }, ['ROW_REMAP_PENDING/warn/reset_gpu@1'], true],
    [{ remapped_rows: { correctable: 0, uncorrectable: 9, pending: false, failure: true } }, ['ROW_REMAP_FAILED/fail/reset_gpu@1'], false],
    [{ lost: true }, ['GPU_LOST/fail/reset_gpu@1'], false],
  ]
  for (const [overrides, expected, healthy] of cases) {
    standin.write({ devices: [device(0), device(1, overrides)] })
    const health = await m.checkGpuHealth()
    assert.deepEqual(issueCodes(health), expected, JSON.stringify(overrides))
    assert.equal(health.healthy, healthy, JSON.stringify(overrides))
    assert.equal(health.status, expected.length === 0 ? 'pass' : healthy ? 'warn' : 'fail')
    assert.equal(health.devices[0].status, 'pass', 'the other device is untouched')
    assert.equal(await m.isGpuHealthy(), healthy)
    for (const issue of health.issues) assert.match(issue.message, /GPU 1 \(GPU-5ca1ab1e/)
    standin.write({ devices: [device(0), device(1)] })
    const back = await m.checkGpuHealth()
    assert.equal(back.status, 'pass', `back to pass after ${JSON.stringify(overrides)}`)
  }
})

test('the temperature threshold is an option and can be changed', async () => {
  standin.write({ devices: [device(0, { temperature: 72 })] })
  const m = monitor({ thresholds: { temperature: 70 } })
  assert.deepEqual({ ...m.thresholds }, { temperature: 70, memory_fragmentation: 0.3 })
  assert.deepEqual(issueCodes(await m.checkGpuHealth()), ['TEMPERATURE_HIGH/fail/none@0'])
  m.thresholds = { temperature: 75 }
  assert.equal((await m.checkGpuHealth()).healthy, true)
  const message = (await monitor({ thresholds: { temperature: 72 } }).checkGpuHealth()).issues[0].message
  assert.match(message, /is at 72 °C, at or above the 72 °C threshold \(it slows itself down at 87 °C and shuts down at 92 °C\)/)
})

test('a lost device keeps its UUID and comes back', async () => {
  standin.write({ devices: [device(0), device(1), device(2)] })
  const m = monitor()
  await m.checkGpuHealth()
  standin.write({ devices: [device(0), device(1, { lost: true }), device(2)] })
  const lost = await m.checkGpuHealth()
  assert.equal(lost.devices[1].lost, true)
  assert.equal(lost.devices[1].uuid, device(1).uuid)
  assert.equal(lost.devices[1].temperature, null)
  assert.equal(lost.devices[1].status, 'fail')
  assert.equal(lost.devices[2].temperature, 40, 'the others still answer')
  standin.write({ devices: [device(0), device(1), device(2)] })
  const back = await m.checkGpuHealth()
  assert.equal(back.devices[1].lost, false)
  assert.equal(back.healthy, true)
})

test('fewer devices than expectedGpus is GPU_MISSING; no GPU at all is healthy unless GPUs are expected', async () => {
  standin.write({ devices: Array.from({ length: 7 }, (_, i) => device(i)) })
  const missing = await monitor({ expectedGpus: 8 }).checkGpuHealth()
  assert.deepEqual(issueCodes(missing), ['GPU_MISSING/fail/reboot_node@null'])
  assert.match(missing.issues[0].message, /7 GPU\(s\) visible, 8 expected/)
  standin.write({ devices: Array.from({ length: 8 }, (_, i) => device(i)) })
  assert.equal((await monitor({ expectedGpus: 8 }).checkGpuHealth()).healthy, true)
  standin.write({ devices: [] })
  const none = await monitor().checkGpuHealth()
  assert.equal(none.healthy, true)
  assert.equal(none.gpu_available, false)
  assert.equal(none.temperature, null)
  assert.equal((await monitor({ expectedGpus: null }).checkGpuHealth()).healthy, true)
  assert.equal((await monitor({ expectedGpus: 1 }).checkGpuHealth()).healthy, false)
})

test('no NVML at all: gpu_available false, healthy, nothing throws; GPUs expected makes it fail and say why', async () => {
  const options = { nvmlLibraryPath: '/nonexistent/libnvidia-ml.so.1', watchXid: false }
  const health = await new GPUHealthMonitor(options).checkGpuHealth()
  assert.equal(health.gpu_available, false)
  assert.match(health.gpu_error, /could not be loaded/)
  assert.equal(health.healthy, true)
  assert.deepEqual(health.devices, [])
  const expected = await new GPUHealthMonitor({ ...options, expectedGpus: 2 }).checkGpuHealth()
  assert.equal(expected.healthy, false)
  assert.match(expected.issues[0].message, /0 GPU\(s\) visible, 2 expected \(NVML library could not be loaded/)
})

test('queries a device does not support are null, never a failure', async () => {
  const unsupported = { temperature: 3, temperature_threshold: 3, utilization: 3, power_usage: 3, power_limit: 3, throttle_reasons: 3, ecc: 3, retired_pages: 3 }
  standin.write({ devices: [device(0, { errors: unsupported, remapped_rows: null })] })
  const health = await monitor().checkGpuHealth()
  const d = health.devices[0]
  for (const field of ['temperature', 'slowdown_temperature', 'shutdown_temperature', 'utilization', 'power_watts', 'power_limit_watts', 'throttle_reasons', 'ecc_uncorrected', 'retired_pages_pending', 'remapped_rows']) {
    assert.equal(d[field], null, field)
  }
  assert.equal(d.error, null)
  assert.equal(d.memory_total, 80 * GiB)
  assert.equal(health.healthy, true)
  assert.equal(health.temperature, null)
})

test('eight devices at once, each with its own trouble', async () => {
  standin.write({
    devices: [
      device(0), device(1, { temperature: 91 }), device(2), device(3, { ecc_uncorrected_volatile: 1 }),
      device(4, { throttle_reasons: 0x40 }), device(5, { lost: true }), device(6), device(7, { retired_pages_pending: true }),
    ],
  })
  const health = await monitor({ expectedGpus: 8 }).checkGpuHealth()
  assert.equal(health.devices.length, 8)
  assert.deepEqual(health.devices.map((d) => d.status), ['pass', 'fail', 'pass', 'fail', 'warn', 'fail', 'pass', 'warn'])
  assert.deepEqual(issueCodes(health), [
    'TEMPERATURE_HIGH/fail/none@1', 'ECC_UNCORRECTED/fail/reset_gpu@3', 'THERMAL_THROTTLE/warn/none@4',
    'GPU_LOST/fail/reset_gpu@5', 'RETIRED_PAGES_PENDING/warn/reset_gpu@7',
  ])
  assert.equal(health.temperature, 91)
})

test('allocator reports: fragmentation at the threshold fails with clear_cache, a fresh report or age clears it', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const m = monitor({ allocatorReportMaxAgeMs: 300 })
  await m.checkGpuHealth() // NVML shows the devices
  m.reportAllocatorStats({ device: 1, allocated: 7 * GiB, reserved: 10 * GiB, pid: 4242 })
  let health = await m.checkGpuHealth()
  assert.deepEqual(issueCodes(health), ['FRAGMENTATION_HIGH/fail/clear_cache@1'])
  assert.ok(Math.abs(health.memory_fragmentation - 0.3) < 1e-12)
  assert.equal(health.memory_allocated, 7 * GiB)
  assert.equal(health.memory_reserved, 10 * GiB)
  assert.equal(health.devices[1].allocator.fragmentation, health.memory_fragmentation)
  assert.ok(health.devices[1].allocator.reported_at <= Date.now())
  // After torch.cuda.empty_cache() the worker reports again.
  m.reportAllocatorStats({ device: 1, allocated: 7 * GiB, reserved: 8 * GiB, pid: 4242 })
  health = await m.checkGpuHealth()
  assert.equal(health.healthy, true)
  assert.equal(health.memory_fragmentation, 1 / 8)
  // A second process on the same device adds up; fragmentation is the worst process's.
  m.reportAllocatorStats({ device: 1, allocated: 1 * GiB, reserved: 4 * GiB, pid: 4343 })
  health = await m.checkGpuHealth()
  assert.equal(health.memory_reserved, 12 * GiB)
  assert.equal(health.memory_fragmentation, 0.75)
  // Reports stop counting after allocatorReportMaxAgeMs.
  await new Promise((resolve) => setTimeout(resolve, 400))
  health = await m.checkGpuHealth()
  assert.equal(health.memory_fragmentation, 0)
  assert.equal(health.devices[1].allocator, null)
  assert.equal(health.healthy, true)
})

test('reportAllocatorStats validates its input', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const m = monitor()
  await m.checkGpuHealth()
  const cases = [
    [undefined, TypeError, /^stats must be an object, got undefined$/],
    [5, TypeError, /^stats must be an object, got 5$/],
    [{ device: 0, allocated: 1 }, TypeError, /^stats\.reserved must be a number, got undefined$/],
    [{ device: '0', allocated: 1, reserved: 2 }, TypeError, /^stats\.device must be a number, got a string$/],
    [{ device: 0, allocated: 1, reserved: 2, extra: 1 }, TypeError, /unknown option 'extra'/],
    [{ device: -1, allocated: 1, reserved: 2 }, RangeError, /^stats\.device must be an integer in \[0, 4095\], got -1$/],
    [{ device: 0.5, allocated: 1, reserved: 2 }, RangeError, /stats\.device/],
    [{ device: 2, allocated: 1, reserved: 2 }, RangeError, /^stats\.device must be an integer in \[0, 1\], got 2$/],
    [{ device: 0, allocated: -1, reserved: 2 }, RangeError, /^stats\.allocated must be an integer in \[0, 9007199254740991\], got -1$/],
    [{ device: 0, allocated: 1.5, reserved: 2 }, RangeError, /stats\.allocated/],
    [{ device: 0, allocated: 3, reserved: 2 }, RangeError, /^stats\.allocated must be at most reserved, got allocated 3 > reserved 2$/],
    [{ device: 0, allocated: 1, reserved: 2 ** 60 }, RangeError, /stats\.reserved/],
    [{ device: 0, allocated: 1, reserved: 2, pid: 0 }, RangeError, /stats\.pid/],
    [{ device: 0, allocated: 1, reserved: 2, pid: 'x' }, TypeError, /stats\.pid must be a number/],
  ]
  for (const [stats, type, message] of cases) {
    assert.throws(() => m.reportAllocatorStats(stats), (err) => err instanceof type && message.test(err.message), JSON.stringify(stats))
  }
  assert.equal((await m.checkGpuHealth()).memory_reserved, 0, 'nothing bad was recorded')
  // Before NVML has shown any device, only expectedGpus can vouch for an index.
  const fresh = new GPUHealthMonitor({ nvmlLibraryPath: '/nonexistent/other.so', watchXid: false })
  assert.throws(() => fresh.reportAllocatorStats({ device: 0, allocated: 1, reserved: 2 }), /no GPU is known yet/)
  const promised = new GPUHealthMonitor({ nvmlLibraryPath: '/nonexistent/other.so', watchXid: false, expectedGpus: 1 })
  promised.reportAllocatorStats({ device: 0, allocated: 1, reserved: 2 })
})

test('constructor options are validated', () => {
  const cases = [
    [{ thresholds: { temperature: 0 } }, RangeError, /^thresholds\.temperature must be a number in \(0, 150\], got 0$/],
    [{ thresholds: { temperature: '80' } }, TypeError, /^thresholds\.temperature must be a number, got a string$/],
    [{ thresholds: { memory_fragmentation: 1.2 } }, RangeError, /^thresholds\.memory_fragmentation must be a number in \(0, 1\], got 1\.2$/],
    [{ thresholds: { fragmentation: 0.3 } }, TypeError, /unknown option 'fragmentation'/],
    [{ expectedGpus: -1 }, RangeError, /^expectedGpus must be an integer in \[0, 4096\], got -1$/],
    [{ expectedGpus: 1.5 }, RangeError, /expectedGpus/],
    [{ expectedGpus: '8' }, TypeError, /^expectedGpus must be a number, got a string$/],
    [{ xidWindowMs: 0 }, RangeError, /^xidWindowMs must be an integer in \(0, 2147483647\], got 0$/],
    [{ allocatorReportMaxAgeMs: -5 }, RangeError, /allocatorReportMaxAgeMs/],
    [{ watchXid: 'yes' }, TypeError, /^watchXid must be a boolean, got a string$/],
    [{ nvmlLibraryPath: 1 }, TypeError, /^nvmlLibraryPath must be a string, got 1$/],
    [{ expectedGPUs: 8 }, TypeError, /unknown option 'expectedGPUs'/],
    ['x', TypeError, /^options must be an object, got a string$/],
  ]
  for (const [options, type, message] of cases) {
    assert.throws(() => new GPUHealthMonitor(options), (err) => err instanceof type && message.test(err.message) && /^ERR_/.test(err.code), JSON.stringify(options))
  }
  const m = monitor()
  assert.deepEqual({ ...m.thresholds }, { temperature: 80, memory_fragmentation: 0.3 })
  assert.throws(() => { m.thresholds = { temperature: 500 } }, RangeError)
  assert.equal(m.thresholds.temperature, 80)
})

test('a process that used a GPU monitor, with its Xid watch thread, exits on its own', () => {
  const result = runChild(`
    const { GPUHealthMonitor } = require(${PACKAGE})
    const m = new GPUHealthMonitor({ nvmlLibraryPath: ${JSON.stringify(STANDIN_LIBRARY)} })
    setTimeout(() => m.checkGpuHealth().then((h) => console.log(JSON.stringify(h.xid_watch.state))), 300)
  `, standin.env())
  assert.equal(result, 'watching')
})
