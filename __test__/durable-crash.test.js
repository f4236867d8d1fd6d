'use strict'
// The durability claim, proved by crashing the writer: a child creates checkpoints and
// journals operations as fast as it can and is killed with SIGKILL at random moments, 200
// times. After each kill a fresh manager must restore a checkpoint at least as new as the
// last one acknowledged (byte-identical when it is that one) and exactly the operations
// acknowledged as begun and not acknowledged as ended (give or take the one in flight).
// The loop is the soak's (scripts/soak/crash.js), which runs it 2000 times.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { runCrashLoop } = require('../scripts/soak/crash')

const KILLS = Number(process.env.HPC_HEALTH_CRASH_KILLS || 200)

test(`${KILLS} SIGKILLs mid-write lose nothing acknowledged`, { timeout: 600000 }, async () => {
  const directory = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-crash-')), 'state')
  const result = await runCrashLoop({ directory, kills: KILLS })
  console.log(`# ${JSON.stringify({ ...result, failures: result.failures.length })}`)
  assert.equal(result.kills, KILLS)
  assert.deepEqual(result.failures, [])
  assert.ok(result.checkpoints_acknowledged > 0, 'checkpoints were acknowledged')
})
