'use strict'
// The shipped alerting rules (deploy/prometheus/) under promtool: they load, their unit tests
// pass, every alert has a test, and the live exposition of a supervisor fires the Xid alert on
// a first Xid 79 (its counters are exported at 0 before the first event).
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')
const { RULES, RULE_TESTS, requireTool } = require('./helpers/prometheus')

const devices = [device(0), device(1)]
const standin = new StandinState({ devices, xid_events: [] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
const h = require('..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function promtool(t, args, input) {
  const bin = requireTool(t, 'promtool')
  if (!bin) return null
  return spawnSync(bin, args, { input, encoding: 'utf8', timeout: 30000, cwd: path.dirname(RULES) })
}

test('promtool check rules accepts the shipped rules', (t) => {
  const run = promtool(t, ['check', 'rules', RULES])
  if (!run) return
  assert.equal(run.status, 0, run.stdout + run.stderr)
  assert.match(run.stdout, /SUCCESS: \d+ rules found/)
})

test('promtool test rules: the shipped unit tests pass', (t) => {
  const run = promtool(t, ['test', 'rules', RULE_TESTS])
  if (!run) return
  assert.equal(run.status, 0, run.stdout + run.stderr)
  assert.match(run.stdout, /SUCCESS/)
})

test('every shipped alert is fired by a unit test', () => {
  const alerts = [...fs.readFileSync(RULES, 'utf8').matchAll(/^\s*- alert: (\w+)$/gm)].map((m) => m[1])
  assert.ok(alerts.length >= 10, alerts.join())
  const tests = fs.readFileSync(RULE_TESTS, 'utf8')
  for (const alert of alerts) {
    // An expectation for it that lists at least one alert.
    assert.match(tests, new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`), `${alert} has a firing test`)
  }
})

/** The sample line of `name` whose labels include every one of `labels`, from an exposition. */
function sample(exposition, name, labels) {
  return exposition.split('\n').find((line) => line.startsWith(`${name}{`) &&
    Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
}

test('a first Xid 79 in the live exposition fires the shipped Xid alert under promtool', async (t) => {
  const gpuMonitor = new h.GPUHealthMonitor({ nvmlLibraryPath: STANDIN_LIBRARY })
  const supervisor = new h.HealthSupervisor({ gpuMonitor })
  await supervisor.checkSystemHealth('full')
  const before = supervisor.metrics()
  const series = { index: '0', xid: '79' }
  const quiet = sample(before, 'hpc_health_gpu_xid_errors_total', series)
  assert.ok(quiet, `no Xid 79 series before the first event:\n${before}`)
  assert.match(quiet, / 0$/)
  assert.ok(sample(before, 'hpc_health_gpu_xid_errors_total', { index: '1', xid: '48' }), 'every catalogued Xid of every GPU')

  standin.write({ devices, xid_events: [{ device: 0, xid: 79, id: 1 }] })
  let after = ''
  for (let i = 0; i < 300 && !/ 1$/.test(sample(after, 'hpc_health_gpu_xid_errors_total', series) ?? ''); i++) {
    await sleep(10)
    await gpuMonitor.checkGpuHealth()
    after = supervisor.metrics()
  }
  const fired = sample(after, 'hpc_health_gpu_xid_errors_total', series)
  assert.match(fired ?? '', / 1$/, after)

  const check = promtool(t, ['check', 'metrics'], after)
  if (!check) return
  assert.equal(check.status, 0, check.stdout + check.stderr)

  // Scraped once a minute: three scrapes before the event, two after.
  const selector = quiet.replace(/ \S+$/, '').replace('{', '{job="hpc-health",instance="node-1:9400",')
  const labels = Object.fromEntries([...selector.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
  const unitTest = {
    rule_files: [RULES],
    evaluation_interval: '1m',
    tests: [{
      interval: '1m',
      input_series: [{ series: selector, values: '0 0 0 1 1' }],
      alert_rule_test: [
        { eval_time: '2m', alertname: 'HpcHealthGpuXidFailed', exp_alerts: [] },
        {
          eval_time: '4m',
          alertname: 'HpcHealthGpuXidFailed',
          exp_alerts: [{
            exp_labels: { ...labels, severity: 'critical' },
            exp_annotations: {
              summary: `Xid 79 on GPU 0 (${devices[0].uuid}) of node-1:9400`,
              description: 'The driver reported a GPU failure (Xid 79) in the last 15 minutes; see status().operator_actions for what to do.',
            },
          }],
        },
      ],
    }],
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-rules-'))
  const file = path.join(dir, 'live.test.yml')
  fs.writeFileSync(file, JSON.stringify(unitTest)) // JSON is YAML
  const run = promtool(t, ['test', 'rules', file])
  assert.equal(run.status, 0, run.stdout + run.stderr)
})
