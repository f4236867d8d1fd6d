'use strict'
// Every options object is declared once: the interface in index.d.ts and the keys the
// constructor accepts come from the same struct. Each object below is given an unknown key;
// the TypeError lists the known ones, which must be exactly the interface's fields.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const h = require('..')

const NO_NVML = '/nonexistent/libnvidia-ml.so.1'
const typings = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8')

/** The field names of `export interface name { … }` in index.d.ts. */
function interfaceFields(name) {
  const match = typings.match(new RegExp(`export interface ${name} \\{\\n([\\s\\S]*?)\\n\\}`))
  assert.ok(match, `index.d.ts declares no interface ${name}`)
  return match[1]
    .split('\n')
    .map((line) => line.match(/^  (\w+)\??:/))
    .filter(Boolean)
    .map((m) => m[1])
}

/** The known keys a TypeError for an unknown key lists. */
function knownKeys(make) {
  let error
  try {
    make()
  } catch (e) {
    error = e
  }
  assert.ok(error, 'an unknown key was accepted')
  assert.equal(error.name, 'TypeError')
  assert.equal(error.code, 'ERR_INVALID_ARG_VALUE')
  const match = error.message.match(/has unknown option '__unknown__'; known options are (.*)$/)
  assert.ok(match, error.message)
  return match[1].split(', ')
}

test('each options interface lists exactly the keys its reader accepts', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-typings-'))
  const memory = new h.MemoryMonitor({ nvmlLibraryPath: NO_NVML })
  const gpu = new h.GPUHealthMonitor({ nvmlLibraryPath: NO_NVML, watchXid: false })
  const log = new h.IncidentLog({ directory: path.join(dir, 'log') })
  const x = { __unknown__: 1 }
  const cases = [
    ['MemoryMonitorOptions', () => new h.MemoryMonitor({ ...x })],
    ['MemoryThresholdsInput', () => new h.MemoryMonitor({ thresholds: { ...x } })],
    ['GpuHealthMonitorOptions', () => new h.GPUHealthMonitor({ ...x })],
    ['GpuThresholdsInput', () => new h.GPUHealthMonitor({ thresholds: { ...x } })],
    ['AllocatorStats', () => gpu.reportAllocatorStats({ device: 0, allocated: 1, reserved: 1, ...x })],
    ['MemoryRecoveryOptions', () => new h.MemoryRecovery(memory, { ...x })],
    ['GpuRecoveryOptions', () => new h.GPURecovery(gpu, { ...x })],
    ['CheckpointManagerOptions', () => new h.CheckpointManager({ directory: path.join(dir, 'c'), ...x })],
    ['IncidentLogOptions', () => new h.IncidentLog({ directory: path.join(dir, 'i'), ...x })],
    ['RateLimitInput', () => new h.IncidentLog({ directory: path.join(dir, 'i'), rateLimit: { ...x } })],
    ['IncidentInput', () => log.record({ kind: 'k', message: 'm', ...x })],
    ['ReadFilterInput', () => log.read({ ...x })],
    ['HealthSupervisorOptions', () => new h.HealthSupervisor({ ...x })],
    ['RecoveryBudgetInput', () => new h.HealthSupervisor({ recoveryBudget: { ...x } })],
    ['HysteresisInput', () => new h.HealthSupervisor({ hysteresis: { ...x } })],
    ['JsonRpcOptions', () => new h.HealthSupervisor({}).handleJsonRpc('{}', { ...x })],
    ['HealthIssue', () => new h.HealthSupervisor({}).triggerRecovery({ issues: [{ ...x }] })],
    ['ReadHistoryOptions', () => h.readHistory(dir, { ...x })],
    ['ReportOptions', () => h.renderReport(dir, { ...x })],
    ['ReportThresholdsInput', () => h.renderReport(dir, { thresholds: { ...x } })],
  ]
  for (const [name, make] of cases) {
    assert.deepEqual(knownKeys(make), interfaceFields(name), name)
  }
  fs.rmSync(dir, { recursive: true, force: true })
})
