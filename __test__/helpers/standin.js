'use strict'
// The project's stand-in libnvidia-ml.so (built by `npm run build:standin`), and its state
// file, which a running test rewrites to change what "the driver" reports.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const STANDIN_LIBRARY = path.join(__dirname, '../../target/release/libnvml_standin.so')
if (!fs.existsSync(STANDIN_LIBRARY)) {
  throw new Error(`stand-in NVML not built at ${STANDIN_LIBRARY}: run npm run build:standin`)
}

const GiB = 1024 ** 3

/** A device of the stand-in, healthy unless `overrides` say otherwise. */
function device(index, overrides = {}) {
  return {
    name: `NVIDIA H100 80GB HBM3 (stand-in ${index})`,
    uuid: `GPU-5ca1ab1e-0000-4000-8000-${String(index).padStart(12, '0')}`,
    memory_total: 80 * GiB,
    memory_used: 1 * GiB,
    temperature: 40,
    ...overrides,
  }
}

/** A state file in a fresh temporary directory; `write` replaces it atomically. */
class StandinState {
  constructor(state = { devices: [] }) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-standin-'))
    this.file = path.join(this.dir, 'state.json')
    this.log = path.join(this.dir, 'calls.log')
    this.version = 0
    this.write(state)
  }

  write(state) {
    const temp = `${this.file}.${++this.version}.tmp`
    fs.writeFileSync(temp, JSON.stringify(state))
    fs.renameSync(temp, this.file)
    this.state = state
  }

  /** Environment for a process that should see this state. */
  env(extra = {}) {
    return { ...process.env, HPC_HEALTH_STANDIN_STATE: this.file, HPC_HEALTH_STANDIN_LOG: this.log, ...extra }
  }

  logLines() {
    return fs.existsSync(this.log) ? fs.readFileSync(this.log, 'utf8').trim().split('\n').filter(Boolean) : []
  }
}

/** Runs `script` in a child Node process and parses the JSON it prints last. */
function runChild(script, env) {
  const child = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 30000 })
  if (child.status !== 0) throw new Error(`child failed (${child.status} ${child.signal}): ${child.stderr}`)
  return JSON.parse(child.stdout.trim().split('\n').at(-1))
}

module.exports = { STANDIN_LIBRARY, StandinState, device, runChild, GiB }
