'use strict'
// metrics(): Prometheus text exposition, checked by an independent parser of the format.
const test = require('node:test')
const assert = require('node:assert/strict')
const parsePrometheus = require('parse-prometheus-text-format')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { STANDIN_LIBRARY, StandinState, device, GiB } = require('./helpers/standin')

const devices = [device(0, { temperature: 61, throttle_reasons: 0x40 }), device(1, { memory_used: 2 * GiB })]
const standin = new StandinState({ devices })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const h = require('..')

test('the exposition parses, every family is hpc_health_ with HELP and TYPE, GPUs carry index and uuid labels', async () => {
  const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const memoryRecovery = new h.MemoryRecovery(memoryMonitor, {})
  const supervisor = new h.HealthSupervisor({ memoryMonitor, gpuMonitor, memoryRecovery })
  await supervisor.checkSystemHealth('full')
  await supervisor.recoverSystem('memory')
  const text = supervisor.metrics()
  const families = parsePrometheus(text)
  const byName = Object.fromEntries(families.map((f) => [f.name, f]))
  for (const family of families) {
    assert.match(family.name, /^hpc_health_[a-z0-9_]+$/)
    assert.ok(family.help.length > 0, `${family.name} has HELP`)
    assert.ok(['GAUGE', 'COUNTER'].includes(family.type), `${family.name} has TYPE`)
  }
  for (const name of ['healthy', 'accepting_requests', 'system_memory_used_bytes', 'system_memory_total_bytes', 'system_memory_pressure',
    'gpu_memory_used_bytes', 'gpu_memory_total_bytes', 'gpu_temperature_celsius', 'gpu_power_watts', 'gpu_thermal_throttle',
    'gpu_xid_errors_total', 'recoveries_total', 'incidents_total', 'checks_total', 'check_duration_seconds']) {
    assert.ok(byName[`hpc_health_${name}`], `hpc_health_${name} is exposed`)
  }
  const temps = byName.hpc_health_gpu_temperature_celsius.metrics
  assert.deepEqual(temps.map((m) => [m.labels.index, m.labels.uuid, m.value]), [['0', device(0).uuid, '61'], ['1', device(1).uuid, '40']])
  assert.deepEqual(byName.hpc_health_gpu_thermal_throttle.metrics.map((m) => m.value), ['1', '0'])
  assert.equal(byName.hpc_health_gpu_memory_used_bytes.metrics[1].value, String(2 * GiB))
  assert.equal(byName.hpc_health_healthy.metrics[0].value, '1')
  const ran = byName.hpc_health_recoveries_total.metrics.filter((m) => m.value !== '0')
  assert.deepEqual(ran.map((m) => [m.labels.type, m.labels.result, m.value]), [['memory', 'recovered', '1']])
  assert.equal(byName.hpc_health_system_memory_total_bytes.metrics[0].labels.source, 'host')
  // The same labels on used and total, so that used / total divides in PromQL.
  assert.deepEqual(byName.hpc_health_system_memory_used_bytes.metrics[0].labels, byName.hpc_health_system_memory_total_bytes.metrics[0].labels)
  assert.ok(text.endsWith('\n'))
})

test('hpc_health_process_heap_bytes counts a live native allocation as in use, and its release', async () => {
  const supervisor = new h.HealthSupervisor({ memoryMonitor: new h.MemoryMonitor({}) })
  const inUse = () => {
    const family = parsePrometheus(supervisor.metrics()).find((f) => f.name === 'hpc_health_process_heap_bytes')
    assert.ok(family, 'hpc_health_process_heap_bytes is exposed')
    assert.deepEqual(family.metrics.map((m) => m.labels.state), ['in_use', 'free'])
    return Number(family.metrics[0].value)
  }
  const MiB = 1024 * 1024
  const before = inUse()
  // Buffer.alloc of this size is one malloc'd (mmapped) block outside V8's heap.
  let block = Buffer.alloc(64 * MiB, 1)
  const during = inUse()
  assert.ok(during - before >= 48 * MiB, `in use ${before} then ${during} with 64 MiB allocated`)
  block = null
  // V8 may free a large backing store on a background thread after the collection: poll.
  let after = during
  for (let i = 0; i < 50 && during - after < 48 * MiB; i++) {
    global.gc()
    await new Promise((resolve) => setTimeout(resolve, 100))
    after = inUse()
  }
  assert.ok(during - after >= 48 * MiB, `in use ${during} then ${after} once the 64 MiB were released`)
  assert.equal(block, null)
})

/** The samples of `name` in `text`, as [labels, value] pairs. */
function samples(text, name) {
  return parsePrometheus(text).find((f) => f.name === name)?.metrics.map((m) => [m.labels, m.value]) ?? []
}
const value = (text, name, labels) => samples(text, name).find(([l]) => Object.entries(labels).every(([k, v]) => l[k] === v))?.[1]

test('every counter has its label sets at 0 before the first event', async () => {
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const supervisor = new h.HealthSupervisor({ gpuMonitor, gpuRecovery: new h.GPURecovery(gpuMonitor) })
  await supervisor.checkSystemHealth('full')
  const text = supervisor.metrics()
  const recoveries = samples(text, 'hpc_health_recoveries_total')
  const types = ['memory', 'out_of_memory', 'device_lost', 'gpu', 'process']
  const results = ['recovered', 'not_recovered', 'failed', 'interrupted']
  assert.deepEqual(recoveries.map(([l]) => `${l.type}/${l.result}`).sort(), types.flatMap((t) => results.map((r) => `${t}/${r}`)).sort())
  assert.ok(recoveries.every(([, v]) => v === '0'))
  const kinds = samples(text, 'hpc_health_incidents_total').map(([l, v]) => (assert.equal(v, '0'), l.kind))
  for (const kind of ['health_unhealthy', 'recovery_started', 'recovery_finished', 'checkpoint_created', 'checkpoint_failed', 'operator_action_required', 'recovery_budget_exhausted']) {
    assert.ok(kinds.includes(kind), `incidents_total{kind="${kind}"} at 0`)
  }
  assert.deepEqual(samples(text, 'hpc_health_intake_pauses_total').map(([l, v]) => [l.reason, v]).sort(), [['budget', '0'], ['forecast', '0'], ['operator', '0'], ['thermal', '0']])
  for (const d of devices) {
    assert.equal(value(text, 'hpc_health_gpu_xid_errors_total', { uuid: d.uuid, xid: '79' }), '0', `Xid 79 of ${d.uuid} at 0`)
  }
})

test('a thermal pause is counted as a pause, not as a recovery, and the issue is a series', async () => {
  standin.write({ devices: [{ ...devices[0], temperature: 95 }, devices[1]] })
  try {
    const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
    const supervisor = new h.HealthSupervisor({ gpuMonitor })
    const health = await supervisor.checkSystemHealth('full')
    const actions = await supervisor.triggerRecovery(health)
    assert.deepEqual(actions.map((a) => [a.type, a.result]), [['pause_intake', 'paused']])
    const text = supervisor.metrics()
    assert.equal(value(text, 'hpc_health_intake_pauses_total', { reason: 'thermal' }), '1')
    assert.equal(value(text, 'hpc_health_intake_paused', { reason: 'thermal' }), '1')
    assert.equal(value(text, 'hpc_health_intake_paused', { reason: 'budget' }), '0')
    assert.deepEqual(samples(text, 'hpc_health_recoveries_total').filter(([, v]) => v !== '0'), [], 'no recovery counted')
    assert.doesNotMatch(text, /result="paused"/)
    assert.deepEqual(samples(text, 'hpc_health_issue').map(([l, v]) => [l.code, l.device, l.severity, v]), [['TEMPERATURE_HIGH', '0', 'fail', '1'], ['THERMAL_THROTTLE', '0', 'warn', '1']])
    // A second request while it stands renews the pause: still one.
    await supervisor.triggerRecovery(await supervisor.checkSystemHealth('full'))
    assert.equal(value(supervisor.metrics(), 'hpc_health_intake_pauses_total', { reason: 'thermal' }), '1')
  } finally {
    standin.write({ devices })
  }
})

test("recoverSystem('gpu') is counted as type gpu, and the recovery's incidents are counted", async () => {
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const supervisor = new h.HealthSupervisor({ gpuMonitor, gpuRecovery: new h.GPURecovery(gpuMonitor) })
  await supervisor.checkSystemHealth('full')
  const action = await supervisor.recoverSystem('gpu')
  const text = supervisor.metrics()
  assert.equal(value(text, 'hpc_health_recoveries_total', { type: 'gpu', result: action.result }), '1', text)
  assert.equal(value(text, 'hpc_health_recoveries_total', { type: 'out_of_memory', result: action.result }), '0')
  assert.equal(value(text, 'hpc_health_incidents_total', { kind: 'recovery_started' }), '1')
  assert.equal(value(text, 'hpc_health_incidents_total', { kind: 'recovery_finished' }), '1')
})

test("the checkpoint manager's incidents are counted in the supervisor's incidents_total", async () => {
  const directory = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-metrics-')), 'checkpoints')
  const checkpointManager = new h.CheckpointManager({ directory })
  const supervisor = new h.HealthSupervisor({ memoryMonitor: new h.MemoryMonitor({}), checkpointManager, checkpointIntervalMs: 1000, intervalMs: 60000 })
  supervisor.start()
  for (let i = 0; i < 400 && supervisor.status().last_checkpoint === null; i++) await new Promise((resolve) => setTimeout(resolve, 25))
  await supervisor.stop()
  assert.notEqual(supervisor.status().last_checkpoint, null, 'the loop took its checkpoint')
  assert.equal(value(supervisor.metrics(), 'hpc_health_incidents_total', { kind: 'checkpoint_created' }), '1')
  await checkpointManager.close()
})

test("the README's metrics table names every family the exposition has, and nothing else", async () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Operating it'), readme.indexOf('## Documentation'))
  const rows = section.split('\n').filter((line) => line.startsWith('| `'))
  const documented = new Set(rows.flatMap((row) => [...row.split('|')[1].matchAll(/`([a-z0-9_]+)`/g)].map((m) => `hpc_health_${m[1]}`)))
  const memoryMonitor = new h.MemoryMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const supervisor = new h.HealthSupervisor({ memoryMonitor, gpuMonitor })
  await supervisor.checkSystemHealth('full')
  const exported = new Set(parsePrometheus(supervisor.metrics()).map((f) => f.name))
  for (const name of exported) assert.ok(documented.has(name), `${name} is exported but not in the README's table`)
  // PSI needs a kernel with it; the rest is there after one full check with GPUs.
  const optional = new Set(['hpc_health_memory_psi_some_avg10', 'hpc_health_memory_psi_full_avg10', 'hpc_health_last_checkpoint_timestamp_seconds', 'hpc_health_last_check_timestamp_seconds', 'hpc_health_last_successful_check_timestamp_seconds'])
  for (const name of documented) assert.ok(exported.has(name) || optional.has(name), `${name} is in the README's table but not exported`)
  assert.ok(documented.size > 20, `${documented.size} names read from the table`)
})
