'use strict'
// The project's stand-in libnvidia-ml.so (built by `npm run build:standin`), and its state
// file, which a running process rewrites to change what "the driver" reports (schema:
// standin/README.md). The one driver of the stand-in: the tests and benches use
// `StandinState` and `device` directly, the soak (scripts/soak.js) its model of eight
// devices and their Xid events, `StandinGpus`.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const LIBRARY_PATH = path.join(__dirname, '../../target/release/libnvml_standin.so')

/** The library's path; throws, saying how to build it, where it is not built. */
function requireStandinLibrary() {
  if (!fs.existsSync(LIBRARY_PATH)) {
    throw new Error(`stand-in NVML not built at ${LIBRARY_PATH}: run npm run build:standin`)
  }
  return LIBRARY_PATH
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

/**
 * A state file, `state.json` in `dir` (by default a fresh temporary directory); `write`
 * replaces it atomically.
 */
class StandinState {
  constructor(state = { devices: [] }, { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-standin-')) } = {}) {
    this.dir = dir
    this.file = path.join(this.dir, 'state.json')
    this.log = path.join(this.dir, 'calls.log')
    this.version = 0
    this.write(state)
  }

  write(state) {
    const temp = `${this.file}.${process.pid}.${++this.version}.tmp`
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

/** What a soak device returns to between faults. */
const BASELINE = Object.freeze({ memory_used: 8 * GiB, temperature: 45, lost: false })

/** The soak's model: `count` devices and their Xid events, written to a `StandinState` in `directory`. */
class StandinGpus {
  constructor(directory, count = 8) {
    this.count = count
    this.devices = Array.from({ length: count }, () => ({ ...BASELINE }))
    this.xidEvents = []
    this.nextXidId = 1
    this.state = new StandinState(this.snapshot(), { dir: directory })
    this.file = this.state.file
  }

  /** The state file's contents. */
  snapshot() {
    return { devices: this.devices.map((d, i) => device(i, d)), xid_events: this.xidEvents }
  }

  write() {
    this.state.write(this.snapshot())
  }

  set(index, fields) {
    Object.assign(this.devices[index], fields)
    this.write()
  }

  /** Every device back to its healthy baseline (Xid events kept). */
  reset() {
    for (const d of this.devices) Object.assign(d, BASELINE)
    this.write()
  }

  /** Devices at or above `ratio` of their memory brought back to the baseline; how many. */
  releaseMemory(ratio = 0.5) {
    let released = 0
    for (const d of this.devices) {
      if (d.memory_used >= ratio * 80 * GiB) {
        d.memory_used = BASELINE.memory_used
        released++
      }
    }
    if (released) this.write()
    return released
  }

  /** Appends Xid events `[{ device, xid }]`, each with a new, larger id. */
  fireXids(events) {
    for (const e of events) this.xidEvents.push({ device: e.device, xid: e.xid, id: this.nextXidId++ })
    this.write()
  }

  /** Drops delivered events from the file; ids keep growing, so nothing is replayed. */
  clearXids() {
    this.xidEvents = []
    this.write()
  }
}

/** Runs `script` in a child Node process and parses the JSON it prints last. */
function runChild(script, env) {
  const child = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 30000 })
  if (child.status !== 0) throw new Error(`child failed (${child.status} ${child.signal}): ${child.stderr}`)
  return JSON.parse(child.stdout.trim().split('\n').at(-1))
}

module.exports = { StandinState, StandinGpus, device, runChild, requireStandinLibrary, GiB, BASELINE }
// Reading STANDIN_LIBRARY checks that it is built: a test that destructures it fails at once
// with how to build it, while the soak's modules that only need GiB load without it.
Object.defineProperty(module.exports, 'STANDIN_LIBRARY', { enumerable: true, get: requireStandinLibrary })
