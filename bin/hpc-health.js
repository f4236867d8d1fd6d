#!/usr/bin/env node
'use strict'
// hpc-health: one-shot health checks, the example service as a sidecar, and offline reading
// of the incident log and checkpoints. Exit codes: 0 fine, 1 unhealthy or damaged, 2 error.
const fs = require('node:fs')
const path = require('node:path')
const { parseArgs } = require('node:util')
const { MemoryMonitor, GPUHealthMonitor, GPURecovery, MemoryRecovery, HealthSupervisor, CheckpointManager, readIncidents, readReport, renderReport } = require('..')

const USAGE = `usage: hpc-health <command> [options]

  status [--json] [--full] [--expected-gpus N]
      One health check of this machine's memory and GPUs. Quick: a table of the GPUs (temperature,
      memory, status), system memory and the issues. --full reads every signal (thresholds,
      utilization, power, throttling, ECC, retired pages, remapped rows, Xid errors) and prints
      each device's details, the memory limit's source, cgroup and PSI, and how long the check
      took. Exit 0 healthy, 1 unhealthy, 2 error.
  serve [--port N] [--http-port N] [--state-dir D] [--interval-ms N]
      Runs the example service as a sidecar on 127.0.0.1: JSON-RPC and MCP over WebSocket
      (--port), HTTP /metrics /healthz /readyz /jobs and MCP (Streamable HTTP) at /mcp
      (--http-port). Stops on SIGINT/SIGTERM.
  mcp [--allow-control] [--expected-gpus N]
      An MCP server on stdin/stdout for a host that spawns it (logs on stderr): the tools
      getSystemHealth, recoverSystem and reportAllocatorStats on this machine's memory and GPUs.
      The host that spawns it is the operator: the control tools (recoverSystem,
      reportAllocatorStats) run only with --allow-control, else they answer "not authorized".
      Stops when stdin closes.
  report [--since 12h|ISO|MS] [--dir D] [--json] [--html FILE] [--width N]
      What happened overnight: a verdict (recoveries, GPUs lost and back, intake paused, work
      lost, checkpoints set aside), each signal as a sparkline with its range, and the incident
      timeline, from the state directory's metrics history and incident log (D, default
      $HPC_HEALTH_STATE_DIR, else ./var; read without locks, also while the service runs).
      --since: 30m, 12h (the default), 7d, an ISO date or time (local unless it gives a zone), or
      ms since the epoch. --json prints the same data; --html FILE writes one self-contained page
      (charts, nothing fetched). Exit 0, or 1 when a GPU is still lost, a recovery did not recover
      or acknowledged work may be lost.
  incidents [--dir D] [--since 12h|ISO|MS] [--kind K ...] [--limit N] [--json]
      Prints an incident log (default $HPC_HEALTH_STATE_DIR/incidents, else ./var/incidents),
      also while a running service writes it (read without its lock; nothing is written).
  checkpoints verify <dir>
      Opens a checkpoint directory as the service would (damaged files are set aside as
      corrupt-...) and lists every checkpoint. Exit 0 when the newest is valid, 1 when one is
      damaged or there is none, 2 on error.
  help [command]
      Prints this text (also --help, -h).

Environment: HPC_HEALTH_NVML_LIBRARY (the NVML library), HPC_HEALTH_EXPECTED_GPUS,
HPC_HEALTH_STATE_DIR, NO_COLOR, and for serve: HPC_HEALTH_RPC_TOKEN (the operator token: every
control method, recoverSystem and reportAllocatorStats), HPC_HEALTH_WORKER_TOKEN (the worker
token: reportAllocatorStats only). Send one in the WebSocket upgrade, or on each POST /mcp, as
Authorization: Bearer <token> (or ?token=<token>); without a token only read-only methods.
`

/** Bad usage or a failure to explain in one line: exit 2. */
class CliError extends Error {
  constructor(message, { usage = false } = {}) {
    super(message)
    this.usage = usage
  }
}

const useColour = process.stdout.isTTY && !process.env.NO_COLOR
const paint = (code) => (text) => (useColour ? `\x1b[${code}m${text}\x1b[0m` : String(text))
const green = paint(32)
const yellow = paint(33)
const red = paint(31)
const byStatus = { pass: green, warn: yellow, fail: red, info: String, error: red, critical: red }
const byVerdict = { ok: green, warn: yellow, fail: red, no_data: String }
const gib = (bytes) => (bytes / 2 ** 30).toFixed(1)
const print = (line = '') => process.stdout.write(line + '\n')
/** Recorded text as a terminal may show it: without control characters (an escape sequence in an incident must not reach the terminal). */
const printable = (text) => String(text).replace(/[\u0000-\u001f\u007f-\u009f]/g, '')

function parse(args, options, allowPositionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true })
  } catch (error) {
    throw new CliError(error.message, { usage: true })
  }
}

/** A whole number from a flag or variable; `undefined` when not given. */
function wholeNumber(value, name) {
  if (value === undefined || value === '') return undefined
  const number = Number(value)
  if (!Number.isSafeInteger(number) || number < 0) throw new CliError(`${name} must be a whole number, got ${JSON.stringify(value)}`, { usage: true })
  return number
}

function requireDirectory(dir, what) {
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new CliError(`${what} ${dir} does not exist`)
}

/** Pads every column but the last to its widest cell; `last` decorates the last cell (after padding, so colour codes do not count as width). */
function table(rows, last = String) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)))
  return rows.map((row) => [...row.slice(0, -1).map((cell, i) => cell.padEnd(widths[i])), last(row.at(-1))].join('  '))
}

async function status(args) {
  const { values } = parse(args, { json: { type: 'boolean' }, full: { type: 'boolean' }, 'expected-gpus': { type: 'string' } })
  const expectedGpus = wholeNumber(values['expected-gpus'] ?? process.env.HPC_HEALTH_EXPECTED_GPUS, '--expected-gpus')
  const memoryMonitor = new MemoryMonitor()
  // No Xid watch: it only sees events from when it starts, which a one-shot check never waits for.
  const gpuMonitor = new GPUHealthMonitor({ expectedGpus: expectedGpus ?? null, watchXid: false })
  const health = await new HealthSupervisor({ memoryMonitor, gpuMonitor }).checkSystemHealth(values.full ? 'full' : 'quick')
  if (values.json) {
    print(JSON.stringify(health, null, 2))
  } else {
    printHealth(health)
    if (values.full) printDetails(health)
  }
  return health.healthy ? 0 : 1
}

function printHealth(health) {
  const { gpu, memory } = health
  if (gpu?.devices.length) {
    const rows = gpu.devices.map((d) => [
      String(d.index),
      d.name ?? '?',
      d.temperature === null ? '-' : `${d.temperature}°C`,
      d.lost ? 'lost' : `${gib(d.memory_used)}/${gib(d.memory_total)} GiB`,
      d.status,
    ])
    for (const line of table([['GPU', 'NAME', 'TEMP', 'MEMORY', 'STATUS'], ...rows], (cell) => (byStatus[cell] ?? String)(cell))) print(line)
  } else {
    print(`gpu: ${gpu?.gpu_error ?? 'no GPUs visible'}`)
  }
  if (memory) {
    const m = memory.metrics
    print(`system memory ${gib(m.system_used)}/${gib(m.system_total)} GiB (${m.memory_limit_source})${memory.system_pressure ? red(' under pressure') : ''}`)
  }
  const verdict = health.healthy ? green('healthy') : red('UNHEALTHY')
  print(`${verdict} (${health.check_type} check)${health.accepting_requests ? '' : ', not accepting requests'}`)
  for (const issue of health.issues) {
    const where = issue.device === null ? '' : ` gpu${issue.device}`
    print(`  ${byStatus[issue.severity](issue.severity)} ${issue.code}${where}: ${issue.message}`)
  }
}

const yesNo = (flag) => (flag ? 'yes' : 'no')
const orDash = (value, unit = '') => (value === null || value === undefined ? '-' : `${value}${unit}`)

/** What a full check read beyond the quick table: each device's every signal, memory's sources, the check's cost. */
function printDetails(health) {
  const { gpu, memory } = health
  for (const d of gpu?.devices ?? []) {
    print()
    print(`gpu${d.index} ${d.uuid ?? ''}${d.error ? `  ${red(d.error)}` : ''}`)
    if (d.lost) continue
    print(`  temperature ${orDash(d.temperature, '°C')} (slowdown ${orDash(d.slowdown_temperature, '°C')}, shutdown ${orDash(d.shutdown_temperature, '°C')})`)
    print(`  utilization ${orDash(d.utilization, '%')}, power ${orDash(d.power_watts)}/${orDash(d.power_limit_watts)} W`)
    print(`  throttle reasons: ${d.throttle_reasons === null ? '-' : d.throttle_reasons.join(', ') || 'none'}`)
    const rows = d.remapped_rows
    const remapped = rows ? `${rows.correctable} correctable, ${rows.uncorrectable} uncorrectable${rows.pending ? ', pending' : ''}${rows.failure ? ', FAILED' : ''}` : '-'
    print(`  ecc uncorrected ${orDash(d.ecc_uncorrected)}, retired pages pending ${d.retired_pages_pending === null ? '-' : yesNo(d.retired_pages_pending)}, remapped rows ${remapped}`)
    print(`  xid errors: ${d.xid_errors.length === 0 ? 'none' : d.xid_errors.map((x) => x.code ?? JSON.stringify(x)).join(', ')}`)
    if (d.allocator) print(`  allocator ${gib(d.allocator.allocated)}/${gib(d.allocator.reserved)} GiB allocated/reserved`)
  }
  if (memory) {
    const m = memory.metrics
    print()
    print(`memory limit from ${m.memory_limit_source}${m.system_error ? `  ${red(m.system_error)}` : ''}`)
    if (m.cgroup) print(`  cgroup v${orDash(m.cgroup.version)} ${orDash(m.cgroup.path)}, limit ${m.cgroup.limit === null ? 'none' : `${gib(m.cgroup.limit)} GiB`}${m.cgroup.error ? `  ${red(m.cgroup.error)}` : ''}`)
    if (m.psi) print(`  psi memory some avg10 ${m.psi.some_avg10}, full avg10 ${m.psi.full_avg10}`)
    print(`  system ratio ${memory.system_ratio.toFixed(3)}${memory.gpus.map((g) => `, gpu${g.index} ratio ${g.ratio.toFixed(3)}`).join('')}`)
  }
  print()
  print(`check took ${health.duration_ms} ms`)
}

async function serve(args) {
  const { values } = parse(args, {
    port: { type: 'string' }, 'http-port': { type: 'string' }, 'state-dir': { type: 'string' }, 'interval-ms': { type: 'string' },
  })
  // Loaded here: the other commands do not need the service or ws.
  const { run } = require('../examples/hpc-service/main')
  const { optionsFromEnv } = require('../examples/hpc-service/HPCServiceFactory')
  const options = optionsFromEnv(process.env)
  const flags = {
    wsPort: wholeNumber(values.port, '--port'),
    httpPort: wholeNumber(values['http-port'], '--http-port'),
    stateDir: values['state-dir'],
    intervalMs: wholeNumber(values['interval-ms'], '--interval-ms'),
  }
  for (const [key, value] of Object.entries(flags)) if (value !== undefined) options[key] = value
  await run(options)
  return undefined // the service runs until a signal; its exit code is 0
}

async function mcp(args) {
  const { values } = parse(args, { 'allow-control': { type: 'boolean' }, 'expected-gpus': { type: 'string' } })
  const expectedGpus = wholeNumber(values['expected-gpus'] ?? process.env.HPC_HEALTH_EXPECTED_GPUS, '--expected-gpus')
  const { serveStdio } = require('../examples/hpc-service/mcpStdio')
  const { LIMITS } = require('../examples/hpc-service/server')
  const memoryMonitor = new MemoryMonitor()
  const gpuMonitor = new GPUHealthMonitor({ expectedGpus: expectedGpus ?? null })
  // No application is attached: a recovery runs the steps that need none (re-opening NVML
  // for a lost GPU, ...) and reports the others as skipped.
  const supervisor = new HealthSupervisor({
    memoryMonitor,
    gpuMonitor,
    memoryRecovery: new MemoryRecovery(memoryMonitor),
    gpuRecovery: new GPURecovery(gpuMonitor),
  })
  const allowControl = values['allow-control'] === true
  // stdout carries the protocol only.
  const log = (line) => process.stderr.write(`hpc-health mcp: ${line}\n`)
  log(`serving MCP on stdio; control tools ${allowControl ? 'allowed (--allow-control)' : 'refused (no --allow-control)'}`)
  await serveStdio({
    supervisor,
    input: process.stdin,
    output: process.stdout,
    authorize: () => allowControl,
    maxMessageBytes: LIMITS.maxMessageBytes,
    maxInFlight: LIMITS.maxInFlightPerConnection,
    log,
  })
  await supervisor.stop()
  return 0
}

async function incidents(args) {
  const { values } = parse(args, {
    dir: { type: 'string' }, since: { type: 'string' }, kind: { type: 'string', multiple: true }, limit: { type: 'string' }, json: { type: 'boolean' },
  })
  const dir = values.dir ?? path.join(stateDir(), 'incidents')
  const limit = wholeNumber(values.limit, '--limit')
  // A typo should not read as an empty log.
  requireDirectory(dir, 'incident log')
  // Without the lock: the service that owns the log keeps writing it meanwhile.
  const records = await withSince(() => readIncidents(dir, { since: values.since, kinds: values.kind, limit }))
  if (values.json) {
    print(JSON.stringify(records, null, 2))
  } else {
    for (const r of records) {
      print(`${new Date(r.timestamp).toISOString()} #${r.seq} ${byStatus[r.severity](r.severity.padEnd(8))} ${printable(r.kind)}: ${printable(r.message)}`)
    }
  }
  return 0
}

/** The service's state directory: $HPC_HEALTH_STATE_DIR, else ./var (as the example service). */
const stateDir = () => process.env.HPC_HEALTH_STATE_DIR || './var'

/**
 * Writes `text` to `file` readable by its owner only (the page holds incident details, as the
 * state directory does): a new file beside it, created 0600, then renamed over `file`, so an
 * existing file (whatever its mode) or a symlink there is replaced, not written through.
 */
function writePrivately(file, text) {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`)
  try {
    fs.writeFileSync(temp, text, { mode: 0o600, flag: 'wx' })
    fs.renameSync(temp, file)
  } catch (error) {
    fs.rmSync(temp, { force: true })
    throw error
  }
}

/** Runs `call`; a bad `--since` (thrown at once or rejected) is a usage error, said in the flag's name. */
async function withSince(call) {
  try {
    return await call()
  } catch (error) {
    if (/^(filter\.)?since /.test(error.message)) throw new CliError(error.message.replace(/^(filter\.)?since/, '--since'), { usage: true })
    throw error
  }
}

async function report(args) {
  const { values } = parse(args, {
    dir: { type: 'string' }, since: { type: 'string' }, json: { type: 'boolean' }, html: { type: 'string' }, width: { type: 'string' },
  })
  if (values.json && values.html !== undefined) throw new CliError('--json and --html are two ways to print: choose one', { usage: true })
  const dir = values.dir ?? stateDir()
  requireDirectory(dir, 'state directory')
  const width = wholeNumber(values.width, '--width') ?? Math.max(16, Math.min(96, (process.stdout.columns || 80) - 40))
  // Without --since, the package's default span (12 h).
  const data = await withSince(() => readReport(dir, { since: values.since }))
  // The exit code follows the package's verdict; the rendering covers the very same span.
  const { verdict } = data
  const span = { since: data.since_ms, until: data.until_ms }
  if (values.json) {
    print(JSON.stringify(data, null, 2))
  } else if (values.html !== undefined) {
    const page = await renderReport(dir, { ...span, format: 'html' })
    writePrivately(values.html, page)
    print(`${byVerdict[verdict.status](verdict.status.replace('_', ' ').toUpperCase())}  ${verdict.line}`)
    print(`wrote ${values.html} (${(page.length / 1024).toFixed(0)} KiB; open it in a browser, nothing is fetched)`)
  } else {
    process.stdout.write(await renderReport(dir, { ...span, format: 'text', color: useColour, width }))
  }
  return verdict.status === 'fail' ? 1 : 0
}

async function checkpoints(args) {
  const { positionals } = parse(args, {}, true)
  if (positionals.length !== 2 || positionals[0] !== 'verify') throw new CliError('expected: checkpoints verify <dir>', { usage: true })
  const dir = positionals[1]
  // CheckpointManager would create a missing directory: verifying one must not.
  requireDirectory(dir, 'checkpoint directory')
  const manager = new CheckpointManager({ directory: dir })
  const list = await manager.listCheckpoints()
  const { skipped, journal_problems: journalProblems } = manager.opened
  for (const c of list) {
    const when = c.valid ? new Date(c.timestamp).toISOString() : '-'
    print(`${c.id}  ${when}  ${c.bytes} bytes  ${c.valid ? green('valid') : red('INVALID')}`)
  }
  for (const s of skipped) {
    print(`${red('INVALID')} ${s.id}: ${s.reason}${s.set_aside_as ? ` (set aside as ${s.set_aside_as})` : ''}`)
  }
  // Journal repairs are reported but do not fail verification: a torn last record is what a crash leaves.
  for (const p of journalProblems) print(`journal: ${p.kind} in ${p.file} at ${p.offset}: ${p.reason}`)
  print(`journal: ${manager.getActiveOperations().length} operation(s) open (active when its owner stopped)`)
  // Files an earlier open set aside no longer count as checkpoints, but an operator should know of them.
  const setAside = fs.readdirSync(dir).filter((name) => name.startsWith('corrupt-') && !skipped.some((s) => s.set_aside_as === name))
  if (setAside.length > 0) print(`set aside earlier: ${setAside.join(' ')}`)
  if (skipped.length > 0 || list.some((c) => !c.valid)) return 1
  if (list.length === 0) {
    print('no checkpoint: there is nothing to restore from')
    return 1
  }
  print(`newest checkpoint ${list.at(-1).id} is valid`)
  return 0
}

/** `help [command]`: the usage on stdout; a command's own lines only, where one is named. */
async function help([command, ...rest]) {
  if (rest.length > 0) throw new CliError('expected: help [command]', { usage: true })
  if (command === undefined) {
    process.stdout.write(USAGE)
    return 0
  }
  if (!Object.hasOwn(COMMANDS, command)) throw new CliError(`unknown command ${JSON.stringify(command)}`, { usage: true })
  // A command's entry: its line in USAGE and the indented lines under it.
  const lines = USAGE.split('\n')
  const start = lines.findIndex((line) => line.startsWith(`  ${command}`))
  const end = lines.findIndex((line, i) => i > start && !line.startsWith('      '))
  print(`usage: hpc-health ${lines.slice(start, end).join('\n').trimStart()}`)
  return 0
}

const COMMANDS = { status, serve, mcp, report, incidents, checkpoints, help }
const HELP_FLAGS = new Set(['--help', '-h'])

/** One line for the operator: the code (when the package gave one), the message, and a hint for a lock. */
function describe(error) {
  const text = error instanceof CliError || !error.code ? error.message : `${error.code}: ${error.message}`
  const locked = error.code === 'ERR_INCIDENT_LOG_LOCKED' || error.code === 'ERR_CHECKPOINT_LOCKED'
  return locked ? `${text}\n(a running service owns this directory: stop it first, or read a copy)` : text
}

async function main([command, ...args]) {
  // `hpc-health --help` and `hpc-health <command> --help` ask for help: stdout, exit 0.
  if (HELP_FLAGS.has(command)) return main(['help', ...args])
  if (Object.hasOwn(COMMANDS, command) && command !== 'help' && args.some((arg) => HELP_FLAGS.has(arg))) return main(['help', command])
  const handler = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : null
  if (!handler) {
    if (command !== undefined) process.stderr.write(`hpc-health: unknown command ${JSON.stringify(command)}\n`)
    process.stderr.write(USAGE)
    return 2
  }
  try {
    return await handler(args)
  } catch (error) {
    process.stderr.write(`hpc-health ${command}: ${describe(error)}\n`)
    if (error.usage) process.stderr.write(USAGE)
    return 2
  }
}

// Piped into `head` or `less` and closed early: what was printed is all the reader wanted.
process.stdout.on('error', (error) => {
  if (error.code !== 'EPIPE') throw error
  process.exit(process.exitCode ?? 0)
})

main(process.argv.slice(2)).then((code) => {
  if (code !== undefined) process.exitCode = code
})
