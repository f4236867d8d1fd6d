'use strict'
// The morning report from a recorded night (the real supervisor on the stand-in, compressed):
// `hpc-health report` as an operator runs it (the verdict line, the incident counts, --json,
// --html, exit codes), `readReport`/`renderReport` and their validation, and GET /report on the
// example service as an attacker would call it. The page itself, in a browser:
// report-page.test.js.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const h = require('..')
const { recordNight } = require('./helpers/night')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')
const { startService, stopAll, http, waitFor } = require('./helpers/service')

const CLI = path.join(__dirname, '../bin/hpc-health.js')
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-report-'))
const stateDir = path.join(work, 'var')
let night
test.before(async () => {
  night = await recordNight({ stateDir })
})
test.after(() => {
  stopAll()
  fs.rmSync(work, { recursive: true, force: true })
})

function cli(args) {
  // A fixed zone, so that the times printed are the ones computed here.
  const run = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, TZ: 'UTC', NO_COLOR: '1' }, encoding: 'utf8', timeout: 30000 })
  return { code: run.status, stdout: run.stdout, stderr: run.stderr }
}

const hm = (ms) => new Date(ms).toISOString().slice(11, 16)
const hms = (ms) => new Date(ms).toISOString().slice(11, 19)
const span = () => ['--dir', stateDir, '--since', String(night.since)]

test('the terminal report of a night: the verdict line first, then the signals and the incident counts, each traceable to the log', async () => {
  const { code, stdout, stderr } = cli(['report', ...span()])
  assert.equal(code, 0, stderr)
  const lines = stdout.split('\n')
  assert.match(lines[0], /^hpc-health report {2}\d{4}-\d\d-\d\d \d\d:\d\d → .* times in UTC\)$/)
  const verdict = lines[1]
  assert.match(verdict, /^WARN {2}/, 'recoveries ran and a GPU was lost: worth a look, nothing left broken')

  // Every figure in the verdict is the incident log's or the history's.
  const log = await h.readIncidents(path.join(stateDir, 'incidents'), { since: night.since })
  const started = log.filter((r) => r.kind === 'recovery_started')
  const finished = log.filter((r) => r.kind === 'recovery_finished')
  assert.ok(started.length >= 2, `a memory and a device-lost recovery: ${started.map((r) => r.message)}`)
  assert.ok(finished.every((r) => r.details.result === 'recovered'))
  assert.ok(verdict.includes(`${started.length} recoveries (all recovered)`), verdict)
  const history = await h.readHistory(path.join(stateDir, 'history'), { since: night.since })
  const lostPoints = history.gpus[night.lostGpu].points.filter((p) => p.lost)
  assert.ok(lostPoints.length > 0, 'the history flags the lost GPU')
  const [start, end] = [lostPoints[0].t, lostPoints.at(-1).t + lostPoints.at(-1).step_ms]
  // Minutes, or seconds when both fall in the same minute (as in a compressed night).
  const [from, to] = hm(start) === hm(end) ? [hms(start), hms(end)] : [hm(start), hm(end)]
  assert.ok(verdict.includes(`GPU ${night.lostGpu} lost ${from}–${to} and back`), verdict)
  assert.ok(verdict.includes('no acknowledged work lost'), verdict)
  assert.doesNotMatch(verdict, /checkpoints? corrupt/, 'none was')

  // Then the signals, with units, and the incidents counted by severity and kind.
  for (const label of ['state', 'host memory', `GPU ${night.rampGpu} memory`, `GPU ${night.hotGpu} temp`, `GPU ${night.lostGpu} lost`]) {
    assert.match(stdout, new RegExp(`^  ${label} `, 'm'), label)
  }
  assert.match(stdout, new RegExp(`GiB of 80\\.0 GiB \\(pressure above 85 %\\)`))
  assert.match(stdout, new RegExp(`–${night.hotC ?? 88} °C \\(fails at 80 °C\\)`))
  const bySeverity = ['critical', 'error', 'warn', 'info']
    .map((s) => [s, log.filter((r) => r.severity === s).length])
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`)
  assert.ok(stdout.includes(`Incidents: ${log.length} (${bySeverity.join(', ')})`), stdout)
  for (const record of log.filter((r) => r.kind !== 'checkpoint_created')) {
    assert.ok(stdout.includes(`#${record.seq}\n`), `incident #${record.seq} (${record.kind}) is in the timeline`)
  }
  assert.doesNotMatch(stdout, /\x1b/, 'no colour with NO_COLOR or on a pipe')
})

test('--json is readReport for the same span; --html writes one page only its owner may read', async () => {
  const json = cli(['report', ...span(), '--json'])
  assert.equal(json.code, 0, json.stderr)
  const printed = JSON.parse(json.stdout)
  const read = await h.readReport(stateDir, { since: night.since, until: printed.until_ms })
  assert.deepEqual(printed, read)
  assert.equal(printed.verdict.status, 'warn')
  assert.deepEqual(printed.incidents.map((r) => r.seq), (await h.readIncidents(path.join(stateDir, 'incidents'), { since: night.since })).map((r) => r.seq).filter((seq) => seq <= printed.incidents.at(-1).seq))
  assert.equal(printed.gpus.length, night.gpus)

  // An existing file open to others, and a symlink to another file: both replaced, neither written through.
  const file = path.join(work, 'night.html')
  fs.writeFileSync(file, 'old', { mode: 0o644 })
  const target = path.join(work, 'elsewhere.txt')
  fs.writeFileSync(target, 'untouched')
  const link = path.join(work, 'link.html')
  fs.symlinkSync(target, link)
  assert.equal(cli(['report', ...span(), '--html', link]).code, 0)
  assert.equal(fs.readFileSync(target, 'utf8'), 'untouched')
  assert.equal(fs.lstatSync(link).isFile(), true)
  const html = cli(['report', ...span(), '--html', file])
  assert.equal(html.code, 0, html.stderr)
  assert.match(html.stdout, /^WARN {2}\d+ recoveries/)
  const line = html.stdout.split('\n')[0].replace(/^WARN {2}/, '')
  assert.equal(fs.statSync(file).mode & 0o777, 0o600)
  const page = fs.readFileSync(file, 'utf8')
  assert.match(page, /^<!doctype html>/i)
  assert.ok(page.includes(line), 'the page says the verdict the CLI printed')
})

test('the exit code is 1 when the verdict is FAIL: a GPU still lost at the end', async () => {
  const dir = path.join(work, 'lost')
  const standin = new StandinState({ devices: [device(0), device(1, { lost: true })] })
  const supervisor = new h.HealthSupervisor({
    gpuMonitor: new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY, watchXid: false }),
    intervalMs: 20,
    autoRecover: false,
    historyDir: path.join(dir, 'history'),
    historyStepMs: 100,
  })
  const previous = process.env.HPC_HEALTH_STANDIN_STATE
  process.env.HPC_HEALTH_STANDIN_STATE = standin.file
  const since = Date.now() - 1000
  try {
    let checks = 0
    supervisor.on('health', () => checks++)
    supervisor.start()
    await waitFor('a few checks', () => checks >= 8)
    await supervisor.stop()
  } finally {
    process.env.HPC_HEALTH_STANDIN_STATE = previous
  }
  const { code, stdout } = cli(['report', '--dir', dir, '--since', String(since)])
  assert.equal(code, 1, stdout)
  assert.match(stdout.split('\n')[1], /^FAIL {2}No recoveries, GPU 1 lost since \d\d:\d\d, unhealthy/)
  assert.match(stdout, /note: no incident log in /)
})

test('bad usage is exit 2 and names the flag', () => {
  const bad = cli(['report', '--dir', stateDir, '--since', 'yesterday'])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /^hpc-health report: --since must be a duration \(30m, 12h, 7d\), an ISO date or time, or ms since the epoch, got "yesterday"/)
  const missing = cli(['report', '--dir', path.join(work, 'nowhere')])
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /state directory .*nowhere does not exist/)
  const both = cli(['report', '--dir', stateDir, '--json', '--html', path.join(work, 'x.html')])
  assert.equal(both.code, 2)
  assert.match(both.stderr, /--json and --html/)
  assert.equal(cli(['incidents', '--dir', path.join(stateDir, 'incidents'), '--since', '5 minutes']).code, 2)
  assert.match(cli(['incidents', '--dir', path.join(stateDir, 'incidents'), '--since', '1h']).stdout, /recovery_started/)
})

test('recorded text reaches the terminal without control characters: hpc-health incidents and report', async () => {
  const dir = path.join(work, 'hostile')
  const log = new h.IncidentLog({ directory: path.join(dir, 'incidents') })
  const hostile = 'pwned \x1b]52;c;aGk=\x07 \x1b[2J\x1b[31m\x9b'
  await log.record({ kind: `kind${hostile}`, severity: 'error', message: hostile })
  await log.record({ kind: 'recovery_started', severity: 'warn', message: 'm', details: { id: hostile, type: hostile } })
  await log.close()
  for (const args of [['incidents', '--dir', path.join(dir, 'incidents')], ['report', '--dir', dir]]) {
    const { code, stdout } = cli(args)
    assert.ok(code === 0 || code === 1, `${args[0]}: exit ${code}`)
    assert.match(stdout, /pwned/, `${args[0]} shows the text`)
    assert.doesNotMatch(stdout, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, `${args[0]}: ${JSON.stringify(stdout)}`)
  }
})

test('readReport and renderReport validate what they are given, and reject what they cannot read with a code', async () => {
  assert.throws(() => h.readReport(), { name: 'TypeError', message: /directory/ })
  assert.throws(() => h.readReport(stateDir, { since: {} }), { name: 'TypeError', message: /^since must be a number or a string/ })
  assert.throws(() => h.readReport(stateDir, { since: '5 minutes' }), { name: 'RangeError', message: /^since must be a duration/ })
  assert.throws(() => h.readReport(stateDir, { since: -1 }), { name: 'RangeError', message: /since/ })
  assert.throws(() => h.readReport(stateDir, { since: 10, until: 5 }), { name: 'RangeError', message: /since \(10\) must be before until \(5\)/ })
  assert.throws(() => h.readReport(stateDir, { format: 'html' }), { name: 'TypeError', message: /format is for renderReport/ })
  assert.throws(() => h.readReport(stateDir, { thresholds: { gpu_memory: 2 } }), { name: 'RangeError', message: /thresholds\.gpu_memory/ })
  assert.throws(() => h.renderReport(stateDir, { format: 'pdf' }), { name: 'RangeError', message: /format must be 'text' or 'html'/ })
  assert.throws(() => h.renderReport(stateDir, { width: 3 }), { name: 'RangeError', message: /width/ })
  assert.throws(() => h.renderReport(stateDir, { colour: true }), { name: 'TypeError', message: /colour/ })
  await assert.rejects(h.readReport(path.join(work, 'nowhere')), { code: 'ERR_NOT_FOUND' })

  // The thresholds given are the ones drawn.
  const drawn = await h.readReport(stateDir, { since: night.since, thresholds: { gpu_memory: 0.5, temperature: 95 } })
  assert.deepEqual(drawn.thresholds, { gpu_memory: 0.5, system_memory: 0.8, temperature_c: 95 })
  const text = await h.renderReport(stateDir, { since: night.since, thresholds: { gpu_memory: 0.5, temperature: 95 }, width: 20 })
  assert.match(text, /pressure above 50 %/)
  assert.match(text, /fails at 95 °C/)
  assert.match(text, /^ {2}host memory {3}[▁▂▃▄▅▆▇█ ]{20} {2}\d/m, 'width columns a sparkline')
})

test('GET /report on the example service: the page, live; a bad since is 400; a cross-site page is refused', async () => {
  const standin = new StandinState({ devices: [device(0), device(1)] })
  const serviceDir = path.join(work, 'service')
  const service = await startService(standin.env({
    HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY,
    HPC_HEALTH_STATE_DIR: serviceDir,
    HPC_HEALTH_INTERVAL_MS: '50',
    HPC_HISTORY_STEP_MS: '100',
  }))
  assert.match(service.output, /what happened overnight: http:\S+\/report/)
  await waitFor('a history bucket', () => fs.existsSync(path.join(serviceDir, 'history')))
  const page = await http(`${service.httpUrl}/report?since=5m`)
  assert.equal(page.status, 200)
  assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
  assert.match(page.headers.get('content-security-policy'), /default-src 'none'/)
  assert.equal(page.headers.get('cache-control'), 'no-store')
  assert.match(page.text, /^<!doctype html>/i)

  for (const since of ['bogus', '5 minutes', '9'.repeat(30), '2026-13-01', '%00']) {
    const bad = await http(`${service.httpUrl}/report?since=${encodeURIComponent(since)}`)
    assert.equal(bad.status, 400, since)
    assert.match(bad.json.error, /since must be/)
  }
  const far = await http(`${service.httpUrl}/report?since=${Date.now() + 3600e3}`)
  assert.equal(far.status, 400, 'since after now')
  const cross = await http(`${service.httpUrl}/report`, { headers: { origin: 'https://evil.example' } })
  assert.equal(cross.status, 403)
  assert.equal((await http(`${service.httpUrl}/report`, { method: 'POST' })).status, 404)
  service.child.kill('SIGTERM')
  assert.deepEqual(await service.exited, { code: 0, signal: null })
})

test('GET /report renders at most maxReportsInFlight pages at once; the rest get 503 with Retry-After, and it recovers', async () => {
  const { startServers, LIMITS } = require('../examples/hpc-service/server')
  // The server's bound under test; the renders are held open until released.
  const held = []
  const report = () => new Promise((resolve) => held.push(() => resolve('<!doctype html><title>r</title>')))
  const idle = { metrics: () => '', status: () => ({ state: 'healthy' }) }
  const servers = await startServers({ supervisor: idle, jobs: { pausedReasons: () => [] }, report })
  try {
    const url = `${servers.httpUrl}/report`
    const first = Array.from({ length: LIMITS.maxReportsInFlight }, () => http(url))
    await waitFor('the renders to start', () => held.length === LIMITS.maxReportsInFlight)
    const refused = await http(url)
    assert.equal(refused.status, 503)
    assert.equal(refused.headers.get('retry-after'), '5')
    assert.equal(held.length, LIMITS.maxReportsInFlight, 'no render started for the refused request')
    for (const release of held.splice(0)) release()
    assert.deepEqual((await Promise.all(first)).map((r) => r.status), Array(LIMITS.maxReportsInFlight).fill(200))
    const again = http(url)
    await waitFor('a render after the others ended', () => held.length === 1)
    held.pop()()
    assert.equal((await again).status, 200)
  } finally {
    await servers.close()
  }
})
