'use strict'
// The packed tarball carries the built addon: it installs with no registry and no Rust,
// and loads, in a project that has never seen this repository.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

const ROOT = path.join(__dirname, '..')
const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' } })

test('npm pack gives a tarball that installs offline into an empty project and loads there', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-pack-'))
  // The addon is already built by `npm test`; packing must not rebuild it.
  const packed = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', work], ROOT))[0]
  const files = packed.files.map((f) => f.path)
  for (const needed of ['README.md', 'hpc-health.linux-x64-gnu.node', 'index.d.ts', 'index.js', 'package.json', 'bin/hpc-health.js',
    'examples/hpc-service/main.js', 'node_modules/ws/package.json',
    'deploy/prometheus/hpc-health.rules.yml', 'deploy/grafana/hpc-health.json']) {
    assert.ok(files.includes(needed), `${needed} is in the tarball`)
  }
  // Nothing of the build or the tests: the tarball is what a service needs, and ws is bundled
  // so that installing it needs no registry.
  assert.deepEqual(files.filter((f) => /^(src|target|__test__|standin|bench)\//.test(f)), [])
  const project = path.join(work, 'consumer')
  fs.mkdirSync(project)
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  npm(['install', '--offline', path.join(work, packed.filename)], project)
  const out = execFileSync(process.execPath, ['-e', `
    const { MemoryMonitor } = require('hpc-health')
    new MemoryMonitor({ nvmlLibraryPath: '/nonexistent/libnvidia-ml.so.1' }).checkMemoryPressure()
      .then((p) => console.log(JSON.stringify({ system: typeof p.system_pressure, total: p.metrics.system_total > 0 })))
  `], { cwd: project, encoding: 'utf8' })
  assert.deepEqual(JSON.parse(out), { system: 'boolean', total: true })
  // The example service runs from the installed package, and the CLI is on the path.
  const service = execFileSync(process.execPath, [path.join(project, 'node_modules/hpc-health/examples/hpc-service/main.js')], {
    cwd: project, encoding: 'utf8', timeout: 60000,
    env: { ...process.env, HPC_HEALTH_CHECKS: '2', HPC_HEALTH_INTERVAL_MS: '100', HPC_HEALTH_STATE_DIR: path.join(work, 'var') },
  })
  assert.match(service, /JSON-RPC and MCP on ws:\/\/127\.0\.0\.1:\d+/)
  assert.equal(service.match(/ check (healthy|UNHEALTHY) /g).length, 2)
  const status = JSON.parse(execFileSync(path.join(project, 'node_modules/.bin/hpc-health'), ['status', '--json'], { cwd: project, encoding: 'utf8' }))
  assert.equal(typeof status.healthy, 'boolean')
  fs.rmSync(work, { recursive: true, force: true })
})
