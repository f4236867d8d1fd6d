'use strict'
// The fleet path on the engine operators run: Debian's prometheus scrapes the example service
// every second with the shipped rules loaded; a GPU lost in the stand-in shows up through
// Prometheus' HTTP API as the series and the shipped HpcHealthGpuLost alert. Its `for: 1m`
// is the production value, so the alert is checked `pending` (Prometheus has evaluated it
// true; it would fire a minute later), not waited for.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')
const { startService, stopAll, waitFor } = require('./helpers/service')
const { RULES, DASHBOARD, requireTool, freePort, dashboardExpressions } = require('./helpers/prometheus')

const devices = [device(0), device(1)]
const standin = new StandinState({ devices })
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-prometheus-'))
let prometheus = null

test.after(() => {
  prometheus?.kill('SIGKILL')
  stopAll()
})

/** Starts prometheus scraping `target` with the shipped rules; resolves its API's base URL once ready. */
async function startPrometheus(bin, target) {
  const config = path.join(dir, 'prometheus.yml')
  // JSON is YAML.
  fs.writeFileSync(config, JSON.stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: [RULES],
    scrape_configs: [{ job_name: 'hpc-health', static_configs: [{ targets: [target] }] }],
  }))
  const port = await freePort()
  prometheus = spawn(bin, [
    `--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
  ], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  prometheus.stderr.on('data', (chunk) => { log += chunk })
  let exited = false
  prometheus.once('exit', () => { exited = true })
  const base = `http://127.0.0.1:${port}`
  await waitFor('prometheus to be ready', async () => {
    if (exited) throw new Error(`prometheus exited:\n${log}`)
    try {
      return (await fetch(`${base}/-/ready`, { signal: AbortSignal.timeout(1000) })).ok
    } catch {
      return false
    }
  }, 20000)
  return base
}

async function api(base, pathAndQuery) {
  const response = await fetch(`${base}/api/v1/${pathAndQuery}`, { signal: AbortSignal.timeout(5000) })
  const body = await response.json()
  assert.equal(body.status, 'success', JSON.stringify(body))
  return body.data
}

const query = (base, promql) => api(base, `query?query=${encodeURIComponent(promql)}`)

test('prometheus scrapes the example service and the shipped alert for a lost GPU goes pending', async (t) => {
  const bin = requireTool(t, 'prometheus')
  if (!bin) return
  const service = await startService(standin.env({
    HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY,
    HPC_HEALTH_STATE_DIR: path.join(dir, 'state'),
    HPC_HEALTH_INTERVAL_MS: '200',
  }))
  const target = new URL(service.httpUrl).host
  assert.match(target, /^127\.0\.0\.1:\d+$/)
  const base = await startPrometheus(bin, target)

  const targets = await waitFor('the target to be up', async () => {
    const { activeTargets } = await api(base, 'targets')
    return activeTargets.length === 1 && activeTargets[0].health === 'up' && activeTargets
  }, 20000)
  assert.equal(targets[0].labels.job, 'hpc-health')
  // The counters are there from the first scrape, at 0.
  const xid79 = await waitFor('the Xid series', async () => {
    const { result } = await query(base, 'hpc_health_gpu_xid_errors_total{xid="79"}')
    return result.length === 2 && result
  }, 20000)
  assert.deepEqual(xid79.map((s) => [s.metric.index, s.value[1]]).sort(), [['0', '0'], ['1', '0']])
  for (const [name, count] of [['hpc_health_recoveries_total', 20], ['hpc_health_incidents_total', 16], ['hpc_health_intake_pauses_total', 4]]) {
    const { result } = await query(base, name)
    assert.equal(result.length, count, `${name}: ${JSON.stringify(result.map((s) => s.metric))}`)
  }
  // used / total divides: the same labels on both.
  const ratio = await query(base, 'hpc_health_system_memory_used_bytes / hpc_health_system_memory_total_bytes')
  assert.equal(ratio.result.length, 1)
  assert.ok(Number(ratio.result[0].value[1]) > 0 && Number(ratio.result[0].value[1]) <= 1, JSON.stringify(ratio))

  standin.write({ devices: [devices[0], { ...devices[1], lost: true }] })
  const lost = await waitFor('hpc_health_gpu_lost 1 for GPU 1', async () => {
    const { result } = await query(base, 'hpc_health_gpu_lost == 1')
    return result.length === 1 && result[0]
  }, 20000)
  assert.deepEqual([lost.metric.index, lost.metric.uuid], ['1', devices[1].uuid])
  const issue = await query(base, 'hpc_health_issue{code="GPU_LOST"}')
  assert.deepEqual(issue.result.map((s) => [s.metric.device, s.metric.severity, s.value[1]]), [['1', 'fail', '1']])
  const alert = await waitFor('HpcHealthGpuLost pending', async () => {
    const { alerts } = await api(base, 'alerts')
    return alerts.find((a) => a.labels.alertname === 'HpcHealthGpuLost')
  }, 20000)
  assert.ok(['pending', 'firing'].includes(alert.state), JSON.stringify(alert))
  assert.deepEqual([alert.labels.index, alert.labels.severity, alert.labels.instance], ['1', 'critical', target])
  assert.match(alert.annotations.summary, new RegExp(`GPU 1 \\(${devices[1].uuid}\\) on ${target.replace(/\./g, '\\.')} fell off the bus`))

  // The Grafana dashboard's queries run on this Prometheus (with its variables filled in).
  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'))
  for (const expr of dashboardExpressions(dashboard).filter((e) => !e.startsWith('label_values('))) {
    const promql = expr.replaceAll('$instance', '.*').replaceAll('$__rate_interval', '1m')
    await query(base, promql)
  }
  const issues = await query(base, dashboardExpressions(dashboard).find((e) => e.startsWith('hpc_health_issue')).replaceAll('$instance', '.*'))
  assert.ok(issues.result.some((s) => s.metric.code === 'GPU_LOST'), JSON.stringify(issues.result))
})
