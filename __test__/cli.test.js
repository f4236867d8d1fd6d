'use strict'
// bin/hpc-health.js as an operator runs it: exit codes, --json, the incident log and
// checkpoint verification on directories that another process wrote and then released.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { STANDIN_LIBRARY, StandinState, device, runChild } = require('./helpers/standin')
const { IncidentLog } = require('..')

const CLI = path.join(__dirname, '../bin/hpc-health.js')
const PACKAGE = JSON.stringify(path.join(__dirname, '..'))
const standin = new StandinState({ devices: [device(0), device(1)] })
const env = standin.env({ HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY })
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-cli-'))
test.after(() => fs.rmSync(work, { recursive: true, force: true }))

function cli(args, extraEnv = {}) {
  const run = spawnSync(process.execPath, [CLI, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 30000 })
  return { code: run.status, stdout: run.stdout, stderr: run.stderr }
}

test('status: 0 healthy, a per-device table, no colour on a pipe', () => {
  standin.write({ devices: [device(0), device(1)] })
  const { code, stdout } = cli(['status'])
  assert.equal(code, 0, stdout)
  assert.match(stdout, /^GPU +NAME +TEMP +MEMORY +STATUS$/m)
  assert.match(stdout, /^0 +NVIDIA H100 80GB HBM3 \(stand-in 0\) +40°C +1\.0\/80\.0 GiB +pass$/m)
  assert.match(stdout, /^1 +NVIDIA H100 80GB HBM3 \(stand-in 1\) /m)
  assert.match(stdout, /^healthy \(quick check\)$/m)
  assert.doesNotMatch(stdout, /\x1b\[/)
})

test('status: 1 with a hot GPU or fewer GPUs than expected', () => {
  standin.write({ devices: [device(0), device(1, { temperature: 95 })] })
  const hot = cli(['status'])
  assert.equal(hot.code, 1)
  assert.match(hot.stdout, /^UNHEALTHY/m)
  assert.match(hot.stdout, /fail TEMPERATURE_HIGH gpu1: /)
  standin.write({ devices: [device(0), device(1)] })
  const missing = cli(['status', '--full'], { HPC_HEALTH_EXPECTED_GPUS: '4' })
  assert.equal(missing.code, 1)
  assert.match(missing.stdout, /fail GPU_MISSING: 2 GPU\(s\) visible, 4 expected/)
  assert.equal(cli(['status', '--expected-gpus', '2'], { HPC_HEALTH_EXPECTED_GPUS: '4' }).code, 0, 'the flag wins over the variable')
})

test('status --json prints the health object', () => {
  standin.write({ devices: [device(0), device(1)] })
  const quick = cli(['status', '--json'])
  assert.equal(quick.code, 0)
  const health = JSON.parse(quick.stdout)
  assert.equal(health.check_type, 'quick')
  assert.equal(health.healthy, true)
  assert.equal(health.gpu.devices.length, 2)
  assert.equal(JSON.parse(cli(['status', '--json', '--full']).stdout).check_type, 'full')
})

test('bad usage is exit 2 with the usage on stderr', () => {
  for (const args of [['status', '--bogus'], ['status', '--expected-gpus', 'x'], ['frobnicate'], [], ['checkpoints', 'list', work], ['help', 'frobnicate']]) {
    const { code, stdout, stderr } = cli(args)
    assert.equal(code, 2, args.join(' '))
    assert.match(stderr, /usage: hpc-health <command>/, args.join(' '))
    assert.equal(stdout, '', args.join(' '))
  }
})

test('help: --help, -h and `help` print the usage on stdout and exit 0; `help <command>` and `<command> --help` that command', () => {
  for (const args of [['--help'], ['-h'], ['help']]) {
    const { code, stdout, stderr } = cli(args)
    assert.equal(code, 0, args.join(' '))
    assert.match(stdout, /^usage: hpc-health <command>/, args.join(' '))
    for (const command of ['status', 'serve', 'incidents', 'checkpoints', 'help']) assert.match(stdout, new RegExp(`^  ${command} `, 'm'))
    assert.equal(stderr, '', args.join(' '))
  }
  for (const args of [['help', 'incidents'], ['incidents', '--help'], ['--help', 'incidents']]) {
    const { code, stdout } = cli(args)
    assert.equal(code, 0, args.join(' '))
    assert.match(stdout, /^usage: hpc-health incidents \[--dir D\]/, args.join(' '))
    assert.doesNotMatch(stdout, /checkpoints verify/, args.join(' '))
  }
})

test('status --full prints every device\'s signals, the memory sources and the check\'s duration; quick does not', () => {
  standin.write({ devices: [device(0), device(1, { temperature: 95 })] })
  const full = cli(['status', '--full'])
  assert.equal(full.code, 1)
  assert.match(full.stdout, /^UNHEALTHY \(full check\)$/m)
  assert.match(full.stdout, /fail TEMPERATURE_HIGH gpu1: /)
  for (const index of [0, 1]) assert.match(full.stdout, new RegExp(`^gpu${index} GPU-5ca1ab1e-0000-4000-8000-00000000000${index}$`, 'm'))
  assert.match(full.stdout, /^  temperature 95°C \(slowdown \d+°C, shutdown \d+°C\)$/m)
  assert.match(full.stdout, /^  utilization \d+%, power \d+\/\d+ W$/m)
  assert.match(full.stdout, /^  ecc uncorrected 0, retired pages pending no, remapped rows 0 correctable, 0 uncorrectable$/m)
  assert.match(full.stdout, /^  xid errors: none$/m)
  assert.match(full.stdout, /^memory limit from \S+/m)
  assert.match(full.stdout, /^check took [\d.]+ ms$/m)
  const quick = cli(['status'])
  assert.doesNotMatch(quick.stdout, /^gpu0 |^memory limit from|^check took/m)
  assert.ok(full.stdout.startsWith(quick.stdout.replace('(quick check)', '(full check)').split('\n').slice(0, 3).join('\n')), 'the full output starts with the quick table')
  standin.write({ devices: [device(0), device(1)] })
})

test('status: duration_ms is whole microseconds, not a float tail like 0.37922100000000003', () => {
  for (const args of [['status', '--json'], ['status', '--json', '--full']]) {
    const { duration_ms: duration } = JSON.parse(cli(args).stdout)
    assert.ok(duration > 0)
    assert.equal(Math.round(duration * 1000) / 1000, duration, `${duration}`)
    assert.ok(String(duration).replace(/^\d+\.?/, '').length <= 3, `${duration}`)
  }
})

test('incidents: reads a log another process wrote, filters by kind, since and limit', () => {
  const dir = path.join(work, 'incidents')
  runChild(`
    const { IncidentLog } = require(${PACKAGE})
    const log = new IncidentLog({ directory: ${JSON.stringify(dir)} })
    ;(async () => {
      await log.record({ kind: 'gpu_issue', severity: 'error', message: 'GPU 0 is hot' })
      await log.record({ kind: 'recovery_started', severity: 'info', message: 'memory recovery' })
      await log.record({ kind: 'gpu_issue', severity: 'warn', message: 'GPU 1 throttles' })
      console.log('true')
    })()
  `, env)
  const all = cli(['incidents', '--dir', dir, '--json'])
  assert.equal(all.code, 0, all.stderr)
  const records = JSON.parse(all.stdout)
  assert.deepEqual(records.map((r) => r.message), ['GPU 0 is hot', 'memory recovery', 'GPU 1 throttles'])
  const text = cli(['incidents', '--dir', dir])
  assert.match(text.stdout, /^\S+Z #\d+ error +gpu_issue: GPU 0 is hot$/m)
  const byKind = JSON.parse(cli(['incidents', '--dir', dir, '--json', '--kind', 'recovery_started', '--kind', 'nothing_else']).stdout)
  assert.deepEqual(byKind.map((r) => r.kind), ['recovery_started'])
  assert.equal(JSON.parse(cli(['incidents', '--dir', dir, '--json', '--limit', '1']).stdout).length, 1)
  assert.equal(JSON.parse(cli(['incidents', '--dir', dir, '--json', '--since', '2999-01-01T00:00:00Z']).stdout).length, 0)
  assert.equal(JSON.parse(cli(['incidents', '--dir', dir, '--json', '--since', String(records[0].timestamp)]).stdout).length, 3)
  assert.equal(cli(['incidents', '--dir', dir, '--since', 'yesterday']).code, 2)
})

test('incidents: a log in use by another process is read without its lock; a missing one is exit 2 with the reason', async () => {
  const dir = path.join(work, 'incidents-in-use')
  const owner = new IncidentLog({ directory: dir }) // this test process owns it now
  await owner.record({ kind: 'gpu_issue', severity: 'error', message: 'while it runs' })
  const read = cli(['incidents', '--dir', dir, '--json'])
  assert.equal(read.code, 0, read.stderr)
  assert.deepEqual(JSON.parse(read.stdout).map((r) => r.message), ['while it runs'])
  await owner.record({ kind: 'gpu_issue', severity: 'warn', message: 'and after' })
  assert.deepEqual((await owner.read()).map((r) => r.seq), [1, 2], 'the owner writes on, untouched')
  const missing = cli(['incidents', '--dir', path.join(work, 'no-such-log')])
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /incident log .*no-such-log does not exist/)
  assert.ok(!fs.existsSync(path.join(work, 'no-such-log')), 'reading does not create the directory')
})

test('checkpoints verify: 0 when valid, 1 naming a corrupted newest file, 2 for a missing or unsafe directory', () => {
  const dir = path.join(work, 'checkpoints')
  runChild(`
    const { CheckpointManager } = require(${PACKAGE})
    const manager = new CheckpointManager({ directory: ${JSON.stringify(dir)}, captureState: () => ({ jobs: ['a', 'b'] }) })
    ;(async () => {
      await manager.createCheckpoint()
      await manager.createCheckpoint()
      console.log('true')
    })()
  `, env)
  const valid = cli(['checkpoints', 'verify', dir])
  assert.equal(valid.code, 0, valid.stdout + valid.stderr)
  assert.equal(valid.stdout.match(/^checkpoint-\d{20} .* valid$/gm).length, 2)
  assert.match(valid.stdout, /newest checkpoint checkpoint-0+2 is valid/)

  // Flip one byte of the newest checkpoint's JSON payload (after the 44-byte header).
  const newest = fs.readdirSync(dir).filter((name) => name.endsWith('.ckpt')).sort().at(-1)
  const bytes = fs.readFileSync(path.join(dir, newest))
  bytes[44 + 5] ^= 0x01
  fs.writeFileSync(path.join(dir, newest), bytes)
  const corrupt = cli(['checkpoints', 'verify', dir])
  assert.equal(corrupt.code, 1, corrupt.stdout + corrupt.stderr)
  assert.match(corrupt.stdout, new RegExp(`INVALID ${newest.replace('.ckpt', '')}: .*set aside as corrupt-`))
  const again = cli(['checkpoints', 'verify', dir])
  assert.equal(again.code, 0, 'the older generation is the newest valid one now')
  assert.match(again.stdout, /set aside earlier: corrupt-checkpoint-/)

  const missing = cli(['checkpoints', 'verify', path.join(work, 'no-such-dir')])
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /no-such-dir does not exist/)
  assert.ok(!fs.existsSync(path.join(work, 'no-such-dir')), 'verifying does not create the directory')

  const open = path.join(work, 'open-to-others')
  fs.mkdirSync(open)
  fs.chmodSync(open, 0o755)
  const unsafe = cli(['checkpoints', 'verify', open])
  assert.equal(unsafe.code, 2)
  assert.match(unsafe.stderr, /chmod 700/)
})

test('serve runs the example service (here for two checks, then it stops by itself)', () => {
  const stateDir = path.join(work, 'serve-state')
  const { code, stdout } = cli(['serve', '--port', '0', '--http-port', '0', '--state-dir', stateDir, '--interval-ms', '50'], { HPC_HEALTH_CHECKS: '2' })
  assert.equal(code, 0, stdout)
  assert.match(stdout, /JSON-RPC and MCP on ws:\/\/127\.0\.0\.1:\d+/)
  assert.match(stdout, /HTTP on http:\/\/127\.0\.0\.1:\d+/)
  assert.equal(stdout.match(/ check healthy /g).length, 2)
  assert.ok(fs.existsSync(path.join(stateDir, 'checkpoints')) && fs.existsSync(path.join(stateDir, 'incidents')))
})
