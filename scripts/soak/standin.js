'use strict'
// The stand-in GPU library (target/release/libnvml_standin.so) as the soak drives it: a
// model of eight devices and their Xid events, written atomically to the state file that
// the library re-reads on every call (schema: standin/README.md).
const fs = require('node:fs')
const path = require('node:path')

const GiB = 1024 ** 3
const STANDIN_LIBRARY = path.join(__dirname, '../../target/release/libnvml_standin.so')

function requireStandinLibrary() {
  if (!fs.existsSync(STANDIN_LIBRARY)) {
    throw new Error(`the stand-in NVML is not built at ${STANDIN_LIBRARY}: run npm run build:standin`)
  }
  return STANDIN_LIBRARY
}

const BASELINE = Object.freeze({ memory_used: 8 * GiB, temperature: 45, lost: false })

class StandinGpus {
  /** `directory` holds state.json; `count` devices, healthy. */
  constructor(directory, count = 8) {
    this.file = path.join(directory, 'state.json')
    this.count = count
    this.devices = Array.from({ length: count }, () => ({ ...BASELINE }))
    this.xidEvents = []
    this.nextXidId = 1
    this.writes = 0
    this.write()
  }

  /** The device entries the stand-in reads. */
  deviceEntry(index) {
    const d = this.devices[index]
    return {
      name: `NVIDIA H100 80GB HBM3 (stand-in ${index})`,
      uuid: `GPU-5ca1ab1e-0000-4000-8000-${String(index).padStart(12, '0')}`,
      memory_total: 80 * GiB,
      memory_used: d.memory_used,
      temperature: d.temperature,
      lost: d.lost,
    }
  }

  write() {
    const state = {
      devices: this.devices.map((_, i) => this.deviceEntry(i)),
      xid_events: this.xidEvents,
    }
    const temp = `${this.file}.${process.pid}.${++this.writes}.tmp`
    fs.writeFileSync(temp, JSON.stringify(state))
    fs.renameSync(temp, this.file)
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

module.exports = { StandinGpus, STANDIN_LIBRARY, requireStandinLibrary, GiB, BASELINE }
