'use strict'
// deploy/grafana/hpc-health.json: every PromQL expression in it (panels and variables) names
// only series that a running example service exports, read from its /metrics after a check
// with (stand-in) GPUs, a standing issue and a checkpoint.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')
const { startService, stopAll, waitFor, http } = require('./helpers/service')
const { DASHBOARD, exportedNames, dashboardExpressions, metricNames } = require('./helpers/prometheus')

const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'))
// Exported only where the host can tell: memory PSI (a kernel with /proc/pressure) and the
// native heap (glibc's allocator). Where they are missing the panels stay empty.
const WHERE_THE_HOST_CAN_TELL = new Set(['hpc_health_memory_psi_some_avg10', 'hpc_health_memory_psi_full_avg10', 'hpc_health_process_heap_bytes'])

test.after(stopAll)

test('metricNames reads the series out of PromQL, not its functions, labels or variables', () => {
  assert.deepEqual(
    metricNames('sum by (type, result) (increase(a_total{b="c",instance=~"$instance"}[$__rate_interval])) / on(instance) d > 0 and time() - e * 60 + 1e3'),
    ['a_total', 'd', 'e'],
  )
  assert.deepEqual(metricNames('label_values(hpc_health_healthy, instance)'), ['hpc_health_healthy'])
})

test('the dashboard is Grafana JSON whose every panel queries hpc-health', () => {
  assert.equal(dashboard.uid, 'hpc-health')
  const panels = dashboard.panels.filter((p) => p.type !== 'row')
  assert.ok(panels.length >= 15, `${panels.length} panels`)
  for (const panel of panels) {
    assert.ok(panel.targets?.length > 0, `${panel.title} has queries`)
    assert.deepEqual(panel.datasource, { type: 'prometheus', uid: '${datasource}' }, panel.title)
    for (const { expr } of panel.targets) {
      assert.ok(metricNames(expr).length > 0 && metricNames(expr).every((n) => n.startsWith('hpc_health_')), `${panel.title}: ${expr}`)
    }
  }
})

test('every query of the dashboard names only series the running service exports', async () => {
  const devices = [device(0, { temperature: 85, throttle_reasons: 0x40 }), device(1)]
  const standin = new StandinState({ devices })
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-dashboard-'))
  const service = await startService(standin.env({ HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY, HPC_HEALTH_STATE_DIR: stateDir, HPC_HEALTH_INTERVAL_MS: '100' }))
  const exposition = await waitFor('a check with GPUs and a checkpoint in /metrics', async () => {
    const { text } = await http(`${service.httpUrl}/metrics`)
    return /^hpc_health_gpu_temperature_celsius\{/m.test(text) && /^hpc_health_last_checkpoint_timestamp_seconds /m.test(text) && text
  })
  const exported = exportedNames(exposition)
  assert.ok(exported.has('hpc_health_issue'), 'the hot GPU is a standing issue')
  const queried = new Set()
  for (const expr of dashboardExpressions(dashboard)) {
    for (const name of metricNames(expr)) {
      queried.add(name)
      if (!exported.has(name) && WHERE_THE_HOST_CAN_TELL.has(name)) continue
      assert.ok(exported.has(name), `${name} (in ${expr}) is not exported:\n${[...exported].join('\n')}`)
    }
  }
  // The dashboard covers what operators alert on.
  for (const name of ['hpc_health_healthy', 'hpc_health_issue', 'hpc_health_gpu_xid_errors_total', 'hpc_health_recoveries_total', 'hpc_health_intake_paused', 'hpc_health_last_successful_check_timestamp_seconds']) {
    assert.ok(queried.has(name), `the dashboard shows ${name}`)
  }
})
