'use strict'
// The crash loop's child: writes checkpoints and
// journals operations as fast as it can, printing each acknowledgement once its promise
// resolved (once it is durable), and a line before each write ("inflight ..."). The parent
// kills it with SIGKILL at random moments. One operation is in flight at a time.
const { CheckpointManager } = require('../..')

const directory = process.argv[2]
let counter = Number(process.argv[3] || 0)
const manager = new CheckpointManager({
  directory,
  retain: 2,
  captureState: () => ({ counter, pad: 'x'.repeat(counter % 997) }),
})
const say = (line) => process.stdout.write(line + '\n')

async function main() {
  // Finish what the last run left, so operations do not pile up.
  for (const { id } of manager.getActiveOperations()) {
    say(`inflight end ${id}`)
    await manager.endOperation(id, { resumed: true })
    say(`end ${id}`)
  }
  for (;;) {
    counter++
    const id = `op-${process.pid}-${counter}`
    say(`inflight begin ${id}`)
    await manager.beginOperation(id, { counter })
    say(`begin ${id}`)
    if (counter % 3 === 0) {
      say('inflight checkpoint')
      const checkpoint = await manager.createCheckpoint()
      say(`checkpoint ${JSON.stringify(checkpoint)}`)
    }
    if (counter % 2 === 0) {
      say(`inflight end ${id}`)
      await manager.endOperation(id, { ok: true })
      say(`end ${id}`)
    }
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
