// A GPU service wired up with every class hpc-health exports, written against the
// package's own typings (index.d.ts). `__test__/types.test.js` type-checks it with
// `tsc -p examples/typescript` (strict, no emit): when a declaration changes shape, this
// file stops compiling. The tests do not run it, but it is a complete program (compile it
// with `tsc` and emit on, or run it with a TypeScript runner): it checks memory and GPUs,
// recovers, checkpoints, supervises and answers JSON-RPC calls.

import {
  CheckpointManager,
  GPUHealthMonitor,
  GPURecovery,
  HealthSupervisor,
  IncidentLog,
  MemoryMonitor,
  MemoryRecovery,
  monitoringTools,
  __napiBindingTarget,
} from 'hpc-health'
import type {
  Checkpoint,
  GpuDeviceHealth,
  GpuHealth,
  GpuHealthMonitor,
  GpuRecovery,
  HealthIssue,
  IncidentRecord,
  MemoryMetrics,
  MemoryPressureReport,
  RecordResult,
  RecoveryAction,
  RecoveryOutcome,
  SupervisorStatus,
  SystemHealthReport,
  XidWatchStatus,
} from 'hpc-health'

// ---- compile-time checks that the declarations are real types, not `any` ----------------

type IsAny<T> = 0 extends 1 & T ? true : false
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
function assertType<T extends true>(): T | void {}

assertType<Equals<IsAny<MemoryMetrics['gpu_used']>, false>>()
assertType<Equals<MemoryMetrics['memory_limit_source'], 'host' | 'cgroup'>>()
assertType<Equals<GpuHealth['status'], 'pass' | 'warn' | 'fail'>>()
assertType<Equals<XidWatchStatus['state'], 'starting' | 'watching' | 'retrying'>>()
assertType<Equals<HealthIssue['action'], 'none' | 'clear_cache' | 'restart_app' | 'reset_gpu' | 'reboot_node'>>()
assertType<Equals<RecordResult['seq'], number | null>>()
assertType<Equals<ReturnType<HealthSupervisor['status']>, SupervisorStatus>>()
assertType<Equals<Awaited<ReturnType<MemoryRecovery['recoverFromPressure']>>, boolean>>()
assertType<Equals<GpuHealthMonitor, GPUHealthMonitor>>()
assertType<Equals<GpuRecovery, GPURecovery>>()
assertType<Equals<typeof __napiBindingTarget, 'native' | 'wasm32-wasi' | 'wasm32-wasip1'>>()
// The tool schemas are literal types, usable to validate arguments at compile time.
const checkTypes: readonly ['quick', 'full'] = monitoringTools.getSystemHealth.inputSchema.properties.checkType.enum
const errorTypes: readonly ['memory', 'gpu', 'process'] = monitoringTools.recoverSystem.inputSchema.properties.errorType.enum

// @ts-expect-error thresholds are fractions, not words
new MemoryMonitor({ thresholds: { gpu_memory: 'high' } })
// @ts-expect-error recoverSystem takes 'memory' | 'gpu' | 'process'
void (null as unknown as HealthSupervisor).recoverSystem('disk')

// ---- the service ------------------------------------------------------------------------

const stateDir = process.env.HPC_HEALTH_STATE_DIR ?? '/var/lib/my-gpu-service'

/** What the CUDA worker would do on request; here, a stand-in. */
const worker = {
  emptyCache: async (): Promise<void> => {},
  resetPeakMemoryStats: (): void => {},
  restart: async (): Promise<void> => {},
  allocator: (device: number) => ({ device, allocated: 6 << 30, reserved: 8 << 30, pid: process.pid }),
}

function describeDevice(device: GpuDeviceHealth): string {
  const memory = `${(device.memory_used / 2 ** 30).toFixed(1)}/${(device.memory_total / 2 ** 30).toFixed(1)} GiB`
  const temperature = device.temperature === null ? '?' : `${device.temperature}°C`
  const throttle = device.throttle_reasons?.join(',') ?? 'n/a'
  const xids = device.xid_errors.map((x) => `${x.code}→${x.action}`).join(' ')
  return `#${device.index} ${device.name ?? '?'} ${device.status} ${temperature} ${memory} throttle=${throttle} ${xids}`
}

function describePressure(report: MemoryPressureReport): string {
  const gpus = report.gpus.map((g) => `gpu${g.index}=${g.ratio === null ? '?' : g.ratio.toFixed(2)}`)
  const psi = report.metrics.psi ? ` psi=${report.metrics.psi.some_avg10}` : ''
  return `system=${report.system_ratio.toFixed(2)} ${gpus.join(' ')}${psi} (${report.metrics.memory_limit_source})`
}

function describeOutcome(outcome: RecoveryOutcome | null): string {
  if (!outcome) return 'no recovery yet'
  const steps = outcome.steps.map((s) => `${s.name}:${s.status}${s.error ? `(${s.error})` : ''}`)
  return `${outcome.type} ${outcome.result} in ${outcome.finished_at - outcome.started_at} ms [${steps.join(' ')}]`
}

async function main(): Promise<void> {
  // Monitors.
  const memoryMonitor = new MemoryMonitor({
    thresholds: { gpu_memory: 0.9, system_memory: 0.85, warning_interval: 30_000 },
    nvmlLibraryPath: process.env.HPC_HEALTH_NVML_LIBRARY,
  })
  memoryMonitor.thresholds = { gpu_memory: 0.92 }
  const memoryThreshold: number = memoryMonitor.thresholds.gpu_memory

  const gpuMonitor = new GPUHealthMonitor({
    thresholds: { temperature: 85, memory_fragmentation: 0.4 },
    expectedGpus: 1,
    xidWindowMs: 3_600_000,
    watchXid: true,
  })
  gpuMonitor.thresholds = { temperature: 83 }
  gpuMonitor.reportAllocatorStats(worker.allocator(0))

  const metrics: MemoryMetrics = await memoryMonitor.getMemoryMetrics()
  console.log(`gpu available: ${metrics.gpu_available}, ${metrics.gpus.length} device(s)`, metrics.gpu_error ?? '')
  if (metrics.cgroup?.limit != null) console.log(`cgroup v${metrics.cgroup.version} limit ${metrics.cgroup.limit}`)
  console.log('pressure:', describePressure(await memoryMonitor.checkMemoryPressure()), `(threshold ${memoryThreshold})`)

  const gpu: GpuHealth = await gpuMonitor.checkGpuHealth()
  gpu.devices.forEach((device) => console.log(describeDevice(device)))
  const watch: XidWatchStatus | null = gpu.xid_watch
  console.log(`xid watch: ${watch?.state ?? 'off'} on [${watch?.devices.join(',') ?? ''}]`)
  for (const issue of gpu.issues) console.log(`${issue.severity} ${issue.code}: ${issue.message} → ${issue.action}`)
  console.log('gpu healthy:', await gpuMonitor.isGpuHealthy())

  // Durable state.
  const incidents = new IncidentLog({
    directory: `${stateDir}/incidents`,
    segmentBytes: 1 << 20,
    maxSegments: 16,
    rateLimit: { max: 20, windowMs: 60_000 },
  })
  for (const problem of incidents.problems) console.log(`incident log repaired ${problem.file}@${problem.offset}: ${problem.reason}`)
  const recorded: RecordResult = await incidents.record({
    kind: 'service_started',
    severity: 'info',
    message: 'service started',
    details: { pid: process.pid },
  })
  if (!recorded.suppressed) console.log(`incident #${recorded.seq}`)

  const checkpoints = new CheckpointManager({
    directory: `${stateDir}/checkpoints`,
    retain: 3,
    memoryMonitor,
    gpuMonitor,
    incidentLog: incidents,
    captureState: () => ({ queue: ['job-1', 'job-2'] }),
    cleanCurrentState: () => undefined,
    restoreMemoryState: (memoryState: unknown) => void memoryState,
    restoreOperations: (operations) => operations.forEach((op) => console.log(`interrupted: ${op.id} since ${op.started_at}`)),
    stepTimeoutMs: 10_000,
  })
  const { skipped, journal_problems } = checkpoints.opened
  skipped.forEach((s) => console.log(`checkpoint ${s.id} skipped: ${s.reason} (${s.set_aside_as ?? 'left in place'})`))
  journal_problems.forEach((p) => console.log(`journal ${p.kind} in ${p.file}: ${p.reason}`))
  if (checkpoints.degraded) console.error('persistence is degraded')

  const latest: Checkpoint | null = await checkpoints.latestCheckpoint()
  if (latest) {
    const restored = await checkpoints.restoreFromCheckpoint(latest)
    console.log(`restored ${restored.checkpoint.id} (seq ${restored.checkpoint.seq}), ${restored.operations.length} interrupted`)
  }
  await checkpoints.beginOperation('warmup', { model: 'llama' })
  const active: Array<{ id: string; started_at: number; details: unknown }> = checkpoints.getActiveOperations()
  const checkpoint: Checkpoint = await checkpoints.createCheckpoint()
  console.log(`checkpoint ${checkpoint.id} with ${checkpoint.active_operations.length}/${active.length} operations`)
  await checkpoints.endOperation('warmup', { ok: true })
  for (const listed of await checkpoints.listCheckpoints()) console.log(`${listed.id} ${listed.bytes} B valid=${listed.valid}`)

  // Recovery.
  const memoryRecovery = new MemoryRecovery(memoryMonitor, {
    clearGPUCache: worker.emptyCache,
    defragmentMemory: () => undefined,
    emergencyCleanup: (error) => console.error(`emergency cleanup after ${error.step}: ${error.code} ${error.message}`),
    stepTimeoutMs: 30_000,
    incidentLog: incidents,
  })
  const gpuRecovery = new GPURecovery(gpuMonitor, {
    emptyCache: worker.emptyCache,
    resetPeakMemoryStats: worker.resetPeakMemoryStats,
    reinitialize: worker.restart,
    deviceWaitMs: 30_000,
    memoryThreshold: 0.85,
    incidentLog: incidents,
  })
  if (memoryRecovery.pause_incoming) memoryRecovery.resume()
  const relieved: boolean = await memoryRecovery.recoverFromPressure()
  console.log('memory recovery:', relieved, describeOutcome(memoryRecovery.lastOutcome))
  const handled: boolean = await gpuRecovery.handleGpuError('out_of_memory')
  const verified: boolean = await gpuRecovery.verifyGpuState()
  console.log('gpu recovery:', handled, verified, describeOutcome(gpuRecovery.lastOutcome))
  if (!verified && (await gpuRecovery.reinitializeGpu())) console.log('devices came back')
  await gpuRecovery.recoverFromOom()

  // Supervision.
  const supervisor = new HealthSupervisor({
    memoryMonitor,
    gpuMonitor,
    memoryRecovery,
    gpuRecovery,
    intervalMs: 60_000,
    autoRecover: true,
    recoveryBudget: { max: 3, windowMs: 600_000 },
    restartProcess: worker.restart,
    hysteresis: { unhealthyAfter: 2, healthyAfter: 2 },
    checkTimeoutMs: 30_000,
  })
  const onUnhealthy = (payload: unknown): void => console.error('unhealthy:', payload)
  supervisor.on('unhealthy', onUnhealthy)
  supervisor.on('recovery', (payload) => console.log('recovery:', payload))
  supervisor.start()

  const report: SystemHealthReport = await supervisor.checkSystemHealth('full')
  console.log(`healthy=${report.healthy} accepting=${report.accepting_requests} in ${report.duration_ms} ms`)
  if (!report.healthy) {
    const actions: RecoveryAction[] = await supervisor.triggerRecovery(report)
    actions.forEach((a) => console.log(`${a.type} ${a.result} ${a.detail ?? ''}`))
  }
  const manual: RecoveryAction = await supervisor.recoverSystem('memory')
  console.log(`operator recovery: ${manual.result}`)

  const status: SupervisorStatus = supervisor.status()
  console.log(`${status.state}, budget ${status.budget.used}/${status.budget.max}, checks ${status.checks}`)
  status.operator_actions.forEach((a) => console.log(`operator action needed: ${a.code} on ${a.device}: ${a.action}`))
  const exposition: string = supervisor.metrics()
  console.log(exposition.split('\n').filter((line) => line.startsWith('hpc_health_')).length, 'metric lines')

  // JSON-RPC / MCP, as an operator or agent would call it.
  const health = await supervisor.handleJsonRpc({ jsonrpc: '2.0', id: 1, method: 'getSystemHealth', params: { checkType: checkTypes[1] } })
  const tools = await supervisor.handleJsonRpc('{"jsonrpc":"2.0","id":2,"method":"tools/list"}')
  const recover = await supervisor.handleJsonRpc(
    { jsonrpc: '2.0', id: 3, method: 'recoverSystem', params: { errorType: errorTypes[0] } },
    { authorize: async ({ method, params }) => method === 'recoverSystem' && params !== undefined },
  )
  console.log(JSON.stringify([health, tools, recover]).length, 'bytes of JSON-RPC answers')

  const recent: IncidentRecord[] = await incidents.read({ sinceSeq: 1, kinds: ['service_started'], limit: 10 })
  recent.forEach((r) => console.log(`#${r.seq} ${r.severity} ${r.kind}: ${r.message}`))

  supervisor.off('unhealthy', onUnhealthy)
  await supervisor.stop()
  await checkpoints.close()
  await incidents.close()
  console.log(`binding: ${__napiBindingTarget}`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
