'use strict'
// Writes checkpoints and journals operations as fast as it can, printing each
// acknowledgement once the promise resolved (so: once it is durable). The crash test kills
// it with SIGKILL at random moments. One operation is in flight at a time.
const { CheckpointManager } = require('../..')

const directory = process.argv[2]
const manager = new CheckpointManager({
  directory,
  retain: 2,
  captureState: () => ({ counter, pad: 'x'.repeat(counter % 997) }),
})
let counter = Number(process.argv[3] || 0)
const ack = (line) => process.stdout.write(line + '\n')

async function main() {
  const active = manager.getActiveOperations().map((o) => o.id)
  // Finish what the last run left, so operations do not pile up.
  for (const id of active) {
    process.stdout.write(`inflight end ${id}\n`)
    await manager.endOperation(id, { resumed: true })
    ack(`end ${id}`)
  }
  for (;;) {
    counter++
    const id = `op-${process.pid}-${counter}`
    process.stdout.write(`inflight begin ${id}\n`)
    await manager.beginOperation(id, { counter })
    ack(`begin ${id}`)
    if (counter % 3 === 0) {
      process.stdout.write('inflight checkpoint\n')
      const checkpoint = await manager.createCheckpoint()
      ack(`checkpoint ${JSON.stringify(checkpoint)}`)
    }
    if (counter % 2 === 0) {
      process.stdout.write(`inflight end ${id}\n`)
      await manager.endOperation(id, { ok: true })
      ack(`end ${id}`)
    }
  }
}
main().catch((e) => { console.error(e); process.exit(1) })
