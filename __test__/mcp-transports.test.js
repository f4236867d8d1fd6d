'use strict'
// MCP over the transports hosts speak, each driven by the official TypeScript SDK's own client
// transport, on the stand-in GPU: stdio (`hpc-health mcp`) and Streamable HTTP (POST /mcp on the
// example service and on `hpc-health serve`). Then what a hostile or confused client may send
// to /mcp and to stdin: each refused, and the service still answering.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { Client } = require('@modelcontextprotocol/sdk/client/index.js')
const { StdioClientTransport } = require('@modelcontextprotocol/sdk/client/stdio.js')
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js')
const { LATEST_PROTOCOL_VERSION } = require('@modelcontextprotocol/sdk/types.js')
const { AjvJsonSchemaValidator } = require('@modelcontextprotocol/sdk/validation/ajv-provider.js')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')
const { CLI, startService, stopAll, connect, http, postJob, waitFor } = require('./helpers/service')

const standin = new StandinState({ devices: [device(0), device(1)] })
process.env.HPC_HEALTH_STANDIN_STATE = standin.file
process.env.HPC_HEALTH_NVML_LIBRARY = STANDIN_LIBRARY
const { HealthSupervisor, MemoryMonitor } = require('..')
const { startServers, LIMITS } = require('../examples/hpc-service/server')

const TOKEN = 'test-operator-token'
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-mcp-'))
const env = (name) => standin.env({
  HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY,
  HPC_HEALTH_STATE_DIR: path.join(root, name),
  HPC_HEALTH_INTERVAL_MS: '1000',
  HPC_HEALTH_RPC_TOKEN: TOKEN,
})
const INIT = { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }

let service // examples/hpc-service/main.js
let sidecar // hpc-health serve
/** Both places /mcp is served, by name. */
const HTTP_SERVERS = [['the example service', () => service], ['hpc-health serve', () => sidecar]]
test.before(async () => {
  [service, sidecar] = await Promise.all([startService(env('service')), startService(env('serve'), [CLI, 'serve'])])
})
test.after(() => {
  stopAll()
  fs.rmSync(root, { recursive: true, force: true })
})

/** A connected SDK client; `errors` collects what its transport reported (nothing, if all went well). */
async function connectClient(transport) {
  const client = new Client({ name: 'mcp-transports-test', version: '1.0.0' })
  const errors = []
  client.onerror = (error) => errors.push(error)
  await client.connect(transport)
  return { client, errors }
}

const httpTransport = (url, token) => new StreamableHTTPClientTransport(new URL(url), token === undefined ? {} : { requestInit: { headers: { authorization: `Bearer ${token}` } } })
const stdioTransport = (args = []) => new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp', ...args], env: env('stdio'), stderr: 'pipe' })
const textOf = (result) => result.content.map((c) => c.text).join('\n')

/** What every transport must carry: the tools with their annotations and schemas, a health report that matches its outputSchema, and an input error as a tool result. */
async function assertTools(client) {
  assert.equal(client.getServerVersion().name, 'hpc-health')
  const { tools } = await client.listTools()
  const byName = Object.fromEntries(tools.map((t) => [t.name, t]))
  assert.deepEqual(Object.keys(byName), ['getSystemHealth', 'recoverSystem', 'reportAllocatorStats'])
  assert.equal(byName.getSystemHealth.annotations.readOnlyHint, true)
  assert.equal(byName.recoverSystem.annotations.destructiveHint, true)
  assert.equal(byName.recoverSystem.annotations.readOnlyHint, false)
  assert.equal(byName.getSystemHealth.outputSchema.type, 'object')

  // callTool checks structuredContent against the outputSchema itself (it throws on a
  // mismatch); checked here too with the SDK's validator, and a report missing a field fails it.
  const health = await client.callTool({ name: 'getSystemHealth', arguments: { checkType: 'full' } })
  assert.equal(health.isError, false)
  const matchesSchema = new AjvJsonSchemaValidator().getValidator(byName.getSystemHealth.outputSchema)
  assert.deepEqual(matchesSchema(health.structuredContent).errorMessage, undefined)
  assert.equal(matchesSchema(health.structuredContent).valid, true)
  const { issues, ...withoutIssues } = health.structuredContent
  assert.ok(Array.isArray(issues))
  assert.equal(matchesSchema(withoutIssues).valid, false)
  assert.equal(health.structuredContent.check_type, 'full')
  assert.deepEqual(health.structuredContent.gpu.devices.map((d) => d.uuid), [device(0).uuid, device(1).uuid])
  const text = textOf(health)
  assert.deepEqual(JSON.parse(text), health.structuredContent)
  // Byte counts and indices stay integers in the text (85899345920, not 85899345920.0).
  assert.match(text, new RegExp(`"memory_total":${device(0).memory_total}[,}]`))
  assert.doesNotMatch(text, /\d\.0[,}\]]/)

  // Arguments the input schema refuses: a tool result with isError, which a model can read.
  const badCheck = await client.callTool({ name: 'getSystemHealth', arguments: { checkType: 'slow' } })
  assert.equal(badCheck.isError, true)
  assert.match(textOf(badCheck), /checkType must be one of "quick", "full"/)
  const badRecovery = await client.callTool({ name: 'recoverSystem', arguments: { errorType: 'disk' } })
  assert.equal(badRecovery.isError, true)
  assert.match(textOf(badRecovery), /errorType must be one of/)
}

async function assertRefused(client, why) {
  const refused = await client.callTool({ name: 'recoverSystem', arguments: { errorType: 'gpu' } })
  assert.equal(refused.isError, true, why)
  assert.equal(textOf(refused), 'recoverSystem refused: not authorized', why)
}

test('stdio: hpc-health mcp through the SDK StdioClientTransport; control tools refused without --allow-control', async () => {
  const transport = stdioTransport()
  let stderr = ''
  transport.stderr.on('data', (chunk) => { stderr += chunk })
  const { client, errors } = await connectClient(transport)
  await assertTools(client)
  await assertRefused(client, 'the host did not allow control tools')
  await client.close()
  assert.deepEqual(errors, [], 'stdout carried only protocol messages')
  assert.match(stderr, /hpc-health mcp: serving MCP on stdio; control tools refused/)
})

test('stdio: --allow-control lets the host run recoverSystem; the process ends with stdin', async () => {
  const transport = stdioTransport(['--allow-control'])
  const { client, errors } = await connectClient(transport)
  const recovered = await client.callTool({ name: 'recoverSystem', arguments: { errorType: 'gpu' } })
  assert.equal(recovered.isError, false, textOf(recovered))
  assert.equal(typeof recovered.structuredContent.result, 'string', 'a recovery action ran and reported')
  const pid = transport.pid
  await client.close()
  assert.deepEqual(errors, [])
  await waitFor('hpc-health mcp to exit', () => {
    try {
      process.kill(pid, 0)
      return false
    } catch {
      return true
    }
  })
})

for (const [name, server] of HTTP_SERVERS) {
  test(`Streamable HTTP on ${name}: the SDK's StreamableHTTPClientTransport; the token in Authorization`, async () => {
    const url = `${server().httpUrl}/mcp`
    const anonymous = await connectClient(httpTransport(url))
    assert.ok(anonymous.client.transport.sessionId, 'initialize issued a session')
    assert.equal(anonymous.client.transport.protocolVersion, LATEST_PROTOCOL_VERSION)
    await assertTools(anonymous.client)
    await assertRefused(anonymous.client, 'no token')
    await anonymous.client.close()

    const wrong = await connectClient(httpTransport(url, 'not-the-token'))
    await assertRefused(wrong.client, 'a wrong token')
    await wrong.client.close()

    const operator = await connectClient(httpTransport(url, TOKEN))
    const recovered = await operator.client.callTool({ name: 'recoverSystem', arguments: { errorType: 'gpu' } })
    assert.equal(recovered.isError, false, textOf(recovered))
    await operator.client.transport.terminateSession()
    await operator.client.close()
    for (const { errors } of [anonymous, wrong, operator]) assert.deepEqual(errors, [])
  })
}

/** POSTs one message (a string is sent as is) to `url` with JSON content type and `headers`. */
const post = (url, message, headers = {}) => http(url, {
  method: 'POST',
  headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
  body: typeof message === 'string' ? message : JSON.stringify(message),
})

async function openSession(url, protocolVersion = LATEST_PROTOCOL_VERSION) {
  const init = await post(url, { ...INIT, params: { ...INIT.params, protocolVersion } })
  assert.equal(init.status, 200, init.text)
  assert.equal(init.json.result.protocolVersion, protocolVersion)
  return init.headers.get('mcp-session-id')
}

test('Streamable HTTP: sessions, protocol versions, notifications and the methods the spec names', async () => {
  const url = `${service.httpUrl}/mcp`
  const session = await openSession(url)
  assert.match(session, /^[\x21-\x7e]+$/, 'a session id is visible ASCII')
  const ping = { jsonrpc: '2.0', id: 1, method: 'ping' }

  const ok = await post(url, ping, { 'mcp-session-id': session, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION })
  assert.equal(ok.status, 200)
  assert.match(ok.headers.get('content-type'), /^application\/json/)
  assert.deepEqual(ok.json, { jsonrpc: '2.0', id: 1, result: {} })
  // Without the version header the client speaks what it negotiated.
  assert.equal((await post(url, ping, { 'mcp-session-id': session })).status, 200)
  // A notification, and a response from the client: 202, no body.
  const note = await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, { 'mcp-session-id': session })
  assert.deepEqual([note.status, note.text], [202, ''])
  assert.equal((await post(url, { jsonrpc: '2.0', id: 'x', result: {} }, { 'mcp-session-id': session })).status, 202)

  // An older client negotiates its own revision, and must keep to it.
  const old = await openSession(url, '2025-03-26')
  assert.equal((await post(url, ping, { 'mcp-session-id': old, 'mcp-protocol-version': '2025-03-26' })).status, 200)
  const mismatch = await post(url, ping, { 'mcp-session-id': old, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION })
  assert.equal(mismatch.status, 400)

  // GET would be an SSE stream, which this server does not offer.
  const get = await http(url, { headers: { accept: 'text/event-stream', 'mcp-session-id': session } })
  assert.equal(get.status, 405)
  assert.equal(get.headers.get('allow'), 'POST, DELETE')
  // DELETE ends the session; after it, the id is unknown.
  assert.equal((await http(url, { method: 'DELETE', headers: { 'mcp-session-id': session } })).status, 204)
  assert.equal((await post(url, ping, { 'mcp-session-id': session })).status, 404)
  assert.equal((await http(url, { method: 'DELETE', headers: { 'mcp-session-id': session } })).status, 404)
})

for (const [name, server] of HTTP_SERVERS) {
  test(`Streamable HTTP on ${name} refuses what it must, and keeps answering`, async () => {
    const { httpUrl } = server()
    const url = `${httpUrl}/mcp`
    const session = await openSession(url)
    const ping = { jsonrpc: '2.0', id: 1, method: 'ping' }
    const refusals = [
      ['a page elsewhere (Origin)', () => post(url, INIT, { origin: 'http://evil.example' }), 403],
      ['a DNS-rebound name (Origin)', () => post(url, INIT, { origin: 'http://attacker.test:8080' }), 403],
      ['an opaque Origin', () => post(url, INIT, { origin: 'null' }), 403],
      ['a body over the limit', () => post(url, `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"${'x'.repeat(LIMITS.maxMessageBytes)}"}}`, { 'mcp-session-id': session }), 413],
      ['bad JSON', () => post(url, '{"jsonrpc":"2.0",', { 'mcp-session-id': session }), 400, -32700],
      ['a batch', () => post(url, [ping], { 'mcp-session-id': session }), 400, -32600],
      ['not a message', () => post(url, '42', { 'mcp-session-id': session }), 400, -32600],
      ['no session', () => post(url, ping), 400, -32600],
      ['an unknown session', () => post(url, ping, { 'mcp-session-id': 'no-such-session' }), 404, -32600],
      ['an unsupported protocol version', () => post(url, ping, { 'mcp-session-id': session, 'mcp-protocol-version': '1999-01-01' }), 400, -32600],
      ['not JSON (a form post)', () => post(url, JSON.stringify(INIT), { 'content-type': 'text/plain' }), 415],
      ['PUT', () => http(url, { method: 'PUT', body: '{}' }), 405],
    ]
    for (const [what, send, status, code] of refusals) {
      const response = await send()
      assert.equal(response.status, status, `${what}: ${response.text.slice(0, 200)}`)
      if (code !== undefined) assert.equal(response.json?.error?.code, code, what)
    }
    // A localhost page may call it.
    assert.equal((await post(url, ping, { 'mcp-session-id': session, origin: 'http://localhost:5173' })).status, 200)
    // Still healthy: liveness, and a new session works.
    assert.equal((await http(`${httpUrl}/healthz`)).status, 200)
    const { client, errors } = await connectClient(httpTransport(url))
    assert.equal((await client.callTool({ name: 'getSystemHealth', arguments: {} })).isError, false)
    await assertRefused(client, 'no token')
    await client.close()
    assert.deepEqual(errors, [])
  })
}

test('the Origin check covers the WebSocket upgrade and every HTTP route too', async () => {
  // A page elsewhere could otherwise read health over the WebSocket or submit jobs with a
  // no-CORS "simple" POST.
  await assert.rejects(connect(service.wsUrl, { headers: { origin: 'http://evil.example' } }), /Unexpected server response: 403/)
  const local = await connect(service.wsUrl, { headers: { origin: 'http://127.0.0.1:3000' } })
  assert.equal((await local.call({ jsonrpc: '2.0', id: 1, method: 'ping' })).id, 1)
  local.close()
  const submitted = await http(`${service.httpUrl}/jobs`, { method: 'POST', headers: { origin: 'http://evil.example', 'content-type': 'text/plain' }, body: '{"name":"csrf"}' })
  assert.equal(submitted.status, 403)
  assert.doesNotMatch((await http(`${service.httpUrl}/jobs`)).text, /csrf/)
  assert.equal((await http(`${service.httpUrl}/metrics`, { headers: { origin: 'https://evil.example' } })).status, 403)
  // Without an Origin (Prometheus, curl) as before.
  assert.equal((await postJob(service, { name: 'local' })).status, 202)
})

test('Streamable HTTP: sessions are bounded, and end when idle', async () => {
  const supervisor = new HealthSupervisor({ memoryMonitor: new MemoryMonitor() })
  const servers = await startServers({ supervisor, jobs: null, limits: { maxMcpSessions: 2, mcpSessionIdleMs: 60000 } })
  try {
    const [a, b] = [await openSession(servers.mcpUrl), await openSession(servers.mcpUrl)]
    const third = await post(servers.mcpUrl, INIT)
    assert.equal(third.status, 503)
    assert.equal(third.headers.get('mcp-session-id'), null)
    // Ending one makes room.
    assert.equal((await http(servers.mcpUrl, { method: 'DELETE', headers: { 'mcp-session-id': a } })).status, 204)
    assert.ok(await openSession(servers.mcpUrl))
    assert.equal((await post(servers.mcpUrl, { jsonrpc: '2.0', id: 1, method: 'ping' }, { 'mcp-session-id': b })).status, 200)
  } finally {
    await servers.close()
  }
  const idle = await startServers({ supervisor, jobs: null, limits: { maxMcpSessions: 1, mcpSessionIdleMs: 50 } })
  try {
    const session = await openSession(idle.mcpUrl)
    await new Promise((resolve) => setTimeout(resolve, 120))
    // The idle one ended: its id is unknown, and its place is free.
    assert.equal((await post(idle.mcpUrl, { jsonrpc: '2.0', id: 1, method: 'ping' }, { 'mcp-session-id': session })).status, 404)
    assert.ok(await openSession(idle.mcpUrl))
  } finally {
    await idle.close()
  }
})

test('stdio: an unhealthy machine\'s report, issues and all, matches the outputSchema', async () => {
  const sick = new StandinState({ devices: [device(0, { temperature: 95, ecc_uncorrected_volatile: 3 }), device(1, { lost: true })] })
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'mcp', '--expected-gpus', '3'],
    env: sick.env({ HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY }),
    stderr: 'pipe',
  })
  const { client, errors } = await connectClient(transport)
  const { tools } = await client.listTools()
  const matchesSchema = new AjvJsonSchemaValidator().getValidator(tools.find((t) => t.name === 'getSystemHealth').outputSchema)
  for (const checkType of ['quick', 'full']) {
    const health = await client.callTool({ name: 'getSystemHealth', arguments: { checkType } })
    assert.equal(health.structuredContent.healthy, false)
    const codes = health.structuredContent.issues.map((i) => i.code)
    for (const code of ['TEMPERATURE_HIGH', 'GPU_LOST', 'GPU_MISSING']) assert.ok(codes.includes(code), `${checkType}: ${codes}`)
    const { valid, errorMessage } = matchesSchema(health.structuredContent)
    assert.equal(valid, true, `${checkType}: ${errorMessage}`)
  }
  await client.close()
  assert.deepEqual(errors, [])
  fs.rmSync(sick.dir, { recursive: true, force: true })
})

test('stdio: an over-long line, bad JSON and blank lines are answered or skipped; stdout stays protocol only', async () => {
  const child = spawn(process.execPath, [CLI, 'mcp'], { env: env('stdio-raw'), stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  child.stdout.on('data', (chunk) => { stdout += chunk })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const lines = () => stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line))
  child.stdin.write(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"${'x'.repeat(LIMITS.maxMessageBytes)}"}}\n`)
  child.stdin.write('{"jsonrpc":\n\r\n\n')
  child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'getSystemHealth' } }) + '\r\n')
  child.stdin.end(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'ping' })) // the last one without its newline
  assert.equal(await exited, 0)
  const answers = lines()
  assert.equal(answers.length, 4, stdout.slice(0, 500))
  const byId = (id) => answers.find((a) => a.id === id)
  const errors = answers.filter((a) => a.id === null).map((a) => a.error.code).sort((a, b) => a - b)
  assert.deepEqual(errors, [-32700, -32600])
  assert.equal(byId(2).result.isError, false)
  assert.deepEqual(byId(3).result, {})
})
