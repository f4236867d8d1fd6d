'use strict'
// The example service (examples/hpc-service) end to end, as a child process on the stand-in
// GPU: JSON-RPC and MCP over WebSocket, the HTTP endpoints, intake paused by a hot GPU, and
// jobs that survive SIGKILL through the operation journal; and the factory in process.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const parsePrometheus = require('parse-prometheus-text-format')
const { Client } = require('@modelcontextprotocol/sdk/client/index.js')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')
const { startService, stopAll, connect, WsTransport, http, postJob, floodWithoutReading, waitFor, sleep } = require('./helpers/service')

const standin = new StandinState({ devices: [device(0), device(1)] })
// The in-process test sees the same stand-in as the children.
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
process.env.HPC_HEALTH_NVML_LIBRARY = STANDIN_LIBRARY
const { monitoringTools } = require('..')
const { HPCServiceFactory } = require('../examples/hpc-service/HPCServiceFactory')
const { startServers, MAX_IN_FLIGHT_PER_CONNECTION } = require('../examples/hpc-service/server')

const TOKEN = 'test-operator-token'
const stateDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-service-')), 'var')
const env = standin.env({
  HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY,
  HPC_HEALTH_STATE_DIR: stateDir,
  HPC_HEALTH_INTERVAL_MS: '100',
  HPC_HEALTH_RPC_TOKEN: TOKEN,
})
const request = (id, method, params) => ({ jsonrpc: '2.0', id, method, params })

let service
test.before(async () => { service = await startService(env) })
test.after(() => {
  stopAll()
  fs.rmSync(path.dirname(stateDir), { recursive: true, force: true })
})

test('getSystemHealth by name, quick and full, sees both stand-in GPUs', async () => {
  const rpc = await connect(service.wsUrl)
  const quick = await rpc.call(request(1, 'getSystemHealth', { checkType: 'quick' }))
  assert.equal(quick.result.check_type, 'quick')
  assert.equal(quick.result.healthy, true)
  assert.deepEqual(quick.result.gpu.devices.map((d) => d.uuid), [device(0).uuid, device(1).uuid])
  const full = await rpc.call(request(2, 'getSystemHealth', { checkType: 'full' }))
  assert.equal(full.result.check_type, 'full')
  assert.equal(full.result.gpu.devices[0].power_watts, 70, 'a full check reads every signal')
  rpc.close()
})

test('MCP text content writes whole numbers as integers and durations to the microsecond', async () => {
  const rpc = await connect(service.wsUrl)
  for (const checkType of ['quick', 'full']) {
    const answer = await rpc.call(request(`text-${checkType}`, 'tools/call', { name: 'getSystemHealth', arguments: { checkType } }))
    const { text } = answer.result.content[0]
    assert.match(text, /"memory_total":85899345920[,}]/)
    assert.doesNotMatch(text, /\d\.0[,}\]]/, 'no integer written as a float')
    assert.match(text, /"duration_ms":\d+(\.\d{1,3})?[,}]/)
    assert.deepEqual(JSON.parse(text), answer.result.structuredContent)
  }
  rpc.close()
})

test('a batch gets an array; a notification gets nothing; bad JSON is a parse error', async () => {
  const rpc = await connect(service.wsUrl)
  rpc.socket.send(JSON.stringify([request('a', 'getSystemHealth'), request('b', 'tools/list'), { jsonrpc: '2.0', method: 'getSystemHealth' }]))
  const batch = await waitFor('the batch response', () => rpc.received.find(Array.isArray), 5000)
  assert.deepEqual(batch.map((r) => r.id).sort(), ['a', 'b'], 'the notification in the batch has no response')
  rpc.received.length = 0
  rpc.socket.send(JSON.stringify({ jsonrpc: '2.0', method: 'getSystemHealth', params: { checkType: 'full' } }))
  await rpc.call(request('after', 'ping'))
  await sleep(300) // time for a (wrong) reply to the notification to arrive
  assert.deepEqual(rpc.received.map((r) => r.id), ['after'])
  const parseError = await rpc.call('{"jsonrpc": "2.0", "id": 7, "method"', null)
  assert.equal(parseError.error.code, -32700)
  rpc.close()
})

test('recoverSystem: refused without the token or with a wrong one, run with it (header or ?token=)', async () => {
  const recover = request(1, 'recoverSystem', { errorType: 'process' })
  const anonymous = await connect(service.wsUrl)
  assert.equal((await anonymous.call(recover)).error.code, -32001)
  anonymous.close()
  const wrong = await connect(service.wsUrl, { headers: { authorization: 'Bearer not-the-token' } })
  assert.equal((await wrong.call(recover)).error.code, -32001)
  wrong.close()
  const byHeader = await connect(service.wsUrl, { headers: { authorization: `Bearer ${TOKEN}` } })
  assert.deepEqual((await byHeader.call(recover)).result, { type: 'process', issue: null, device: null, result: 'recovered', detail: 'requested by an operator' })
  byHeader.close()
  const byQuery = await connect(`${service.wsUrl}/?token=${TOKEN}`)
  assert.equal((await byQuery.call(recover)).result.result, 'recovered')
  byQuery.close()
  await waitFor('the worker restarts', () => (service.output.match(/worker: restart/g) || []).length === 2, 5000)
})

test('the service prints the GPUs it sees, and the incidents of every part: recoveries, checkpoints', async () => {
  assert.match(service.output, /^hpc-service: 2 GPU\(s\): 0 NVIDIA H100 80GB HBM3 \(stand-in 0\), 1 NVIDIA H100 80GB HBM3 \(stand-in 1\)$/m)
  const operator = await connect(`${service.wsUrl}/?token=${TOKEN}`)
  assert.equal((await operator.call(request('memory', 'recoverSystem', { errorType: 'memory' }))).result.type, 'memory')
  operator.close()
  // The recovery as the recovery engine recorded it in the incident log.
  await waitFor('the recovery incidents', () => /^\S+ incident \[\w+\] recovery_finished: /m.test(service.output), 5000)
  assert.match(service.output, /^\S+ incident \[\w+\] recovery_started: /m)
  const seqs = []
  const run = await startService({ ...env, HPC_HEALTH_STATE_DIR: path.join(path.dirname(stateDir), 'printed'), HPC_HEALTH_CHECKS: '3', HPC_HEALTH_INTERVAL_MS: '50', HPC_CHECKPOINT_INTERVAL_MS: '1' })
  assert.deepEqual(await run.exited, { code: 0, signal: null }, run.output)
  assert.match(run.output, /^\S+ incident \[info\] checkpoint_created: checkpoint-\d+ written$/m)
  for (const line of run.output.match(/ incident .*/g)) seqs.push(line)
  assert.equal(new Set(seqs).size, seqs.length, 'each incident once')
})

test('without a usable NVML library the service says why the GPU side is unavailable', async () => {
  const run = await startService({ ...env, HPC_HEALTH_NVML_LIBRARY: '/nonexistent/libnvidia-ml.so.1', HPC_HEALTH_STATE_DIR: path.join(path.dirname(stateDir), 'no-gpu'), HPC_HEALTH_CHECKS: '1', HPC_HEALTH_INTERVAL_MS: '50' })
  assert.deepEqual(await run.exited, { code: 0, signal: null }, run.output)
  assert.match(run.output, /^hpc-service: GPU side unavailable: NVML library could not be loaded: \/nonexistent\/libnvidia-ml\.so\.1: /m)
})

test('a message over 1 MiB closes the connection (1009)', async () => {
  const rpc = await connect(service.wsUrl)
  const closed = new Promise((resolve) => rpc.socket.once('close', resolve))
  rpc.socket.send('x'.repeat(1024 * 1024 + 1))
  assert.equal(await closed, 1009)
})

test('MCP through the official SDK client: listTools and callTool', async () => {
  const { socket } = await connect(service.wsUrl, {}, ['mcp'])
  assert.equal(socket.protocol, 'mcp', 'the server accepts the MCP subprotocol')
  const client = new Client({ name: 'example-service-test', version: '1.0.0' })
  await client.connect(new WsTransport(socket))
  assert.equal(client.getServerVersion().name, 'hpc-health')
  const { tools } = await client.listTools()
  const byName = Object.fromEntries(tools.map((t) => [t.name, t]))
  for (const name of ['getSystemHealth', 'recoverSystem']) {
    assert.deepEqual(byName[name]?.inputSchema, monitoringTools[name].inputSchema, `${name} is listed with its inputSchema`)
  }
  const result = await client.callTool({ name: 'getSystemHealth', arguments: { checkType: 'quick' } })
  assert.equal(result.isError, false)
  assert.equal(result.content[0].type, 'text')
  assert.equal(JSON.parse(result.content[0].text).check_type, 'quick')
  assert.equal(result.structuredContent.check_type, 'quick')
  assert.equal(result.structuredContent.gpu.devices.length, 2)
  await client.close()
})

test('HTTP: /healthz, /readyz, /metrics (parsed as Prometheus text), 404', async () => {
  const healthz = await http(`${service.httpUrl}/healthz`)
  assert.equal(healthz.status, 200)
  assert.equal(healthz.text.trim(), 'ok')
  const readyz = await http(`${service.httpUrl}/readyz`)
  assert.equal(readyz.status, 200)
  assert.deepEqual(readyz.json.reasons, [])
  const metrics = await http(`${service.httpUrl}/metrics`)
  assert.equal(metrics.status, 200)
  assert.match(metrics.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const families = Object.fromEntries(parsePrometheus(metrics.text).map((f) => [f.name, f]))
  assert.deepEqual(families.hpc_health_gpu_temperature_celsius.metrics.map((m) => m.labels.index), ['0', '1'])
  assert.equal(families.hpc_health_accepting_requests.metrics[0].value, '1')
  assert.equal((await http(`${service.httpUrl}/nope`)).status, 404)
  assert.equal((await postJob(service, { durationMs: -1 })).status, 400)
})

test('POST /jobs takes duration_ms (the name its answer uses) or durationMs; a bad value or an unknown field is a 400 naming it', async () => {
  for (const body of [{ name: 'snake', duration_ms: 15 }, { name: 'camel', durationMs: 15 }]) {
    const accepted = await postJob(service, body)
    assert.equal(accepted.status, 202, accepted.text)
    assert.equal(accepted.json.duration_ms, 15, JSON.stringify(body))
    assert.equal(accepted.json.name, body.name)
  }
  const refusals = [
    [{ duration_ms: -1 }, /^duration_ms must be a whole number of milliseconds in \[0, 600000\], got -1$/],
    [{ duration_ms: 1.5 }, /^duration_ms must be .* got 1\.5$/],
    [{ duration_ms: '10' }, /^duration_ms must be .* got "10"$/],
    [{ durationMs: 600001 }, /^durationMs must be .* got 600001$/],
    [{ duration_ms: 10, durationMs: 10 }, /^give duration_ms or durationMs, not both$/],
    [{ name: 'typo', duraton_ms: 10 }, /^unknown field "duraton_ms": a job has name, duration_ms, durationMs$/],
    [{ name: 7 }, /^name must be a string of at most 100 characters, got 7$/],
  ]
  for (const [body, message] of refusals) {
    const refused = await postJob(service, body)
    assert.equal(refused.status, 400, JSON.stringify(body))
    assert.match(refused.json.error, message, JSON.stringify(body))
  }
})

test('jobs that were running when the service was SIGKILLed are resumed after a restart', { timeout: 30000 }, async () => {
  const quick = await postJob(service, { name: 'quick', durationMs: 20 })
  assert.equal(quick.status, 202)
  await waitFor('the quick job to finish', async () => (await http(`${service.httpUrl}/jobs`)).json.completed.some((j) => j.id === quick.json.id))
  // Two run (the queue runs two at a time) and one waits; each is journaled before the 202.
  const slow = []
  for (let i = 0; i < 3; i++) slow.push((await postJob(service, { name: `slow-${i}`, durationMs: 600 })).json.id)
  const before = (await http(`${service.httpUrl}/jobs`)).json
  assert.deepEqual(before.pending.map((j) => j.state), ['running', 'running', 'queued'])
  service.child.kill('SIGKILL')
  assert.equal((await service.exited).signal, 'SIGKILL')

  service = await startService(env)
  assert.match(service.output, new RegExp(`resumed 3 from before the restart: ${slow.join(' ')}`))
  const after = (await http(`${service.httpUrl}/jobs`)).json
  assert.deepEqual(after.pending.map((j) => [j.id, j.resumed]), slow.map((id) => [id, true]))
  const done = await waitFor('the resumed jobs to finish', async () => {
    const { completed } = (await http(`${service.httpUrl}/jobs`)).json
    return completed.length === 3 && completed
  })
  assert.deepEqual(done.map((j) => [j.id, j.resumed, j.journaled]).sort(), slow.map((id) => [id, true, true]).sort())
  assert.ok(!service.output.includes(quick.json.id), 'a finished job is not run again')
})

test('a hot GPU pauses intake: /readyz 503 with the reason, POST /jobs 503; both return once it cools', { timeout: 30000 }, async () => {
  assert.equal((await http(`${service.httpUrl}/readyz`)).status, 200)
  standin.write({ devices: [device(0, { temperature: 95 }), device(1)] })
  // The supervisor pauses after two unhealthy checks in a row (its hysteresis).
  const notReady = await waitFor('/readyz 503', async () => {
    const readyz = await http(`${service.httpUrl}/readyz`)
    return readyz.status === 503 && readyz
  })
  assert.equal(notReady.json.ready, false)
  assert.match(notReady.json.reasons.join('\n'), /^thermal: GPU 0 .* 95 °C/m)
  const refused = await postJob(service, { name: 'while-hot' })
  assert.equal(refused.status, 503)
  assert.equal(refused.headers.get('retry-after'), '30')
  assert.deepEqual(refused.json.reasons, notReady.json.reasons)
  assert.match(service.output, /check UNHEALTHY issues=TEMPERATURE_HIGH@gpu0 accepting=true/)
  assert.match(service.output, /recovery pause_intake TEMPERATURE_HIGH@gpu0 -> paused/)

  standin.write({ devices: [device(0), device(1)] })
  await waitFor('/readyz 200', async () => (await http(`${service.httpUrl}/readyz`)).status === 200)
  assert.equal((await postJob(service, { name: 'after-cooling', durationMs: 10 })).status, 202)
})

test('a lost GPU: /readyz 503 names it first, and 200 once it is back', { timeout: 30000 }, async () => {
  await waitFor('/readyz 200', async () => (await http(`${service.httpUrl}/readyz`)).status === 200)
  standin.write({ devices: [device(0), device(1, { lost: true })] })
  const notReady = await waitFor('/readyz 503', async () => {
    const readyz = await http(`${service.httpUrl}/readyz`)
    return readyz.status === 503 && readyz
  })
  assert.equal(notReady.json.reasons[0], 'GPU 1 lost', JSON.stringify(notReady.json))
  standin.write({ devices: [device(0), device(1)] })
  await waitFor('/readyz 200', async () => (await http(`${service.httpUrl}/readyz`)).status === 200)
})

test('SIGTERM shuts the service down cleanly: it exits 0 on its own', async () => {
  service.child.kill('SIGTERM')
  const { code } = await service.exited
  assert.equal(code, 0, service.output)
  assert.match(service.output, /shutting down \(SIGTERM\)[\s\S]*stopped/)
})

test('npm start: Ctrl-C (SIGINT to the whole process group, so node gets it from the terminal and again from npm) exits 0', { timeout: 30000 }, async () => {
  const own = { ...env, HPC_HEALTH_STATE_DIR: path.join(path.dirname(stateDir), 'npm-start') }
  const run = await startService({ ...own, npm_config_loglevel: 'silent' }, ['start'], { command: 'npm', detached: true })
  process.kill(-run.child.pid, 'SIGINT')
  const { code, signal } = await run.exited
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, run.output)
  assert.match(run.output, /shutting down \(SIGINT\)[\s\S]*stopped/)
})

test('HPC_HEALTH_CHECKS: a scripted run stops after that many checks', async () => {
  const run = await startService({ ...env, HPC_HEALTH_CHECKS: '3', HPC_HEALTH_INTERVAL_MS: '50' })
  const { code } = await run.exited
  assert.equal(code, 0, run.output)
  assert.equal(run.output.match(/ check healthy /g).length, 3)
  assert.match(run.output, /shutting down \(3 checks done\)/)
})

test('in process: the factory delegates to its supervisor, and shutdown releases the state for the next instance', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const dir = path.join(path.dirname(stateDir), 'in-process')
  const lines = []
  const first = await new HPCServiceFactory({ stateDir: dir }, (line) => lines.push(line)).initialize()
  const health = await first.checkSystemHealth('quick')
  assert.equal(health.gpu.devices.length, 2)
  assert.deepEqual(await first.triggerRecovery(health), [], 'nothing to recover on a healthy system')
  const { job } = await first.jobs.submit({ name: 'long', durationMs: 60000 })
  await first.shutdown()
  await first.shutdown() // idempotent
  const second = await new HPCServiceFactory({ stateDir: dir }, (line) => lines.push(line)).initialize()
  assert.deepEqual(second.jobs.pending().map((j) => [j.id, j.resumed]), [[job.id, true]], 'a job stopped by shutdown is resumed like one killed')
  await second.shutdown()
  assert.match(lines.join('\n'), /jobs: resumed 1 from before the restart/)
})

test('in process: one connection has at most 16 requests in flight; the rest wait, none is dropped', async () => {
  standin.write({ devices: [device(0), device(1)] })
  const service = await new HPCServiceFactory({ stateDir: path.join(path.dirname(stateDir), 'in-flight') }, () => {}).initialize()
  // The real dispatcher, held at a gate so that the requests pile up.
  let inFlight = 0
  let most = 0
  let open = null
  const gate = new Promise((resolve) => { open = resolve })
  const held = {
    handleJsonRpc: async (text, options) => {
      most = Math.max(most, ++inFlight)
      await gate
      try {
        return await service.supervisor.handleJsonRpc(text, options)
      } finally {
        inFlight--
      }
    },
  }
  const servers = await startServers({ supervisor: held, jobs: service.jobs })
  try {
    const rpc = await connect(servers.wsUrl)
    const total = 200
    for (let i = 0; i < total; i++) rpc.socket.send(JSON.stringify(request(i, 'ping')))
    await waitFor('the first requests reach the dispatcher', () => inFlight === MAX_IN_FLIGHT_PER_CONNECTION, 5000)
    await sleep(200) // time for more to get through, were the limit not kept
    assert.equal(most, MAX_IN_FLIGHT_PER_CONNECTION)
    assert.equal(rpc.received.length, 0)
    open()
    await waitFor('every answer', () => rpc.received.length === total, 10000)
    assert.deepEqual(rpc.received.map((r) => r.id).sort((a, b) => a - b), Array.from({ length: total }, (_, i) => i))
    assert.ok(rpc.received.every((r) => r.result !== undefined), 'each one answered by the dispatcher')
    assert.equal(most, MAX_IN_FLIGHT_PER_CONNECTION)
    rpc.close()
  } finally {
    await servers.close()
    await service.shutdown()
  }
})

test('in process: a connection whose answers are not read stops being read past its byte bound, and is served again once it reads', { timeout: 30000 }, async () => {
  standin.write({ devices: [device(0), device(1)] })
  const service = await new HPCServiceFactory({ stateDir: path.join(path.dirname(stateDir), 'buffered') }, () => {}).initialize()
  let dispatched = 0
  const counting = { handleJsonRpc: (text, options) => { dispatched++; return service.supervisor.handleJsonRpc(text, options) } }
  const servers = await startServers({ supervisor: counting, jobs: service.jobs, limits: { maxBufferedBytesPerConnection: 64 * 1024 } })
  try {
    const rpc = await connect(servers.wsUrl)
    rpc.socket.pause() // the client reads nothing for now
    // About 110 kB of answers each: 11 MB in all, more than the kernel's socket buffers hold.
    const total = 100
    for (let i = 0; i < total; i++) rpc.socket.send(JSON.stringify(Array.from({ length: 50 }, (_, j) => request(`${i}.${j}`, 'getSystemHealth', { checkType: 'quick' }))))
    let seen = -1
    await waitFor('the server to stop reading', async () => {
      const settled = dispatched === seen
      seen = dispatched
      await sleep(300)
      return settled
    }, 20000)
    assert.ok(dispatched < total, `the server stopped reading after ${dispatched} of ${total} messages`)
    rpc.socket.resume()
    await waitFor('every answer', () => rpc.received.length === total, 20000)
    assert.equal(dispatched, total)
    assert.ok(rpc.received.every((batch) => batch.length === 50 && batch.every((r) => r.result?.check_type === 'quick')), 'nothing dropped')
    rpc.close()
  } finally {
    await servers.close()
    await service.shutdown()
  }
})

test('in process: a connection that does not drain its answers within drainTimeoutMs is closed (1008) and logged', { timeout: 30000 }, async () => {
  standin.write({ devices: [device(0), device(1)] })
  const service = await new HPCServiceFactory({ stateDir: path.join(path.dirname(stateDir), 'drain-timeout') }, () => {}).initialize()
  const lines = []
  const limits = { maxBufferedBytesPerConnection: 64 * 1024, drainTimeoutMs: 500, closeGraceMs: 100 }
  const servers = await startServers({ supervisor: service.supervisor, jobs: service.jobs, limits, log: (line) => lines.push(line) })
  try {
    const flood = await floodWithoutReading(Number(new URL(servers.wsUrl).port), 10000)
    flood.socket.destroy()
    assert.equal(flood.closedByServer, true, 'the server closed the connection')
    assert.deepEqual(lines.filter((line) => /unread/.test(line)).map((line) => line.replace(/\d+ bytes/, 'N bytes')),
      ['ws: closing a connection that left N bytes of answers unread for 500 ms (1008)'])
    const other = await connect(servers.wsUrl)
    assert.deepEqual((await other.call(request('other', 'ping'))).result, {}, 'the server still answers others')
    other.close()
  } finally {
    await servers.close()
    await service.shutdown()
  }
})

test('in process: authorize decides per method from the token: operator every control method, worker reportAllocatorStats, none neither', async () => {
  // The dispatcher stand-in answers what the server's authorize says (the real one asks it only for control methods).
  const echo = {
    handleJsonRpc: async (text, { authorize }) => {
      const { id, method } = JSON.parse(text)
      return { jsonrpc: '2.0', id, result: await authorize({ method, params: {} }) }
    },
  }
  const servers = await startServers({ supervisor: echo, jobs: null, rpcToken: 'operator-secret', workerToken: 'worker-secret' })
  const methods = ['recoverSystem', 'reportAllocatorStats', 'getSystemHealth', 'toString', '__proto__']
  const allowed = async (url, options) => {
    const rpc = await connect(url, options)
    const verdicts = {}
    for (const method of methods) verdicts[method] = (await rpc.call({ jsonrpc: '2.0', id: method, method })).result
    rpc.close()
    return Object.keys(verdicts).filter((m) => verdicts[m] === true)
  }
  try {
    assert.deepEqual(await allowed(servers.wsUrl, { headers: { authorization: 'Bearer operator-secret' } }), ['recoverSystem', 'reportAllocatorStats'])
    assert.deepEqual(await allowed(`${servers.wsUrl}/?token=operator-secret`), ['recoverSystem', 'reportAllocatorStats'])
    assert.deepEqual(await allowed(servers.wsUrl, { headers: { authorization: 'Bearer worker-secret' } }), ['reportAllocatorStats'])
    assert.deepEqual(await allowed(`${servers.wsUrl}/?token=worker-secret`), ['reportAllocatorStats'])
    assert.deepEqual(await allowed(servers.wsUrl), [])
    assert.deepEqual(await allowed(servers.wsUrl, { headers: { authorization: 'Bearer worker-secretX' } }), [])
  } finally {
    await servers.close()
  }
})
