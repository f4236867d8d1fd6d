'use strict'
// The example service and `hpc-health serve`, as child processes on the stand-in GPU, against
// hostile clients: malformed HTTP on both ports, a client that floods requests and never reads
// the answers, forged control inputs, and 500 connections at once. Each must leave the service
// serving, with no uncaught exception or unhandled rejection.
const { describe, test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const WebSocket = require('ws')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')
const { MAIN, CLI, RAW, startService, stopAll, connect, http, rawRequest, floodWithoutReading, rssBytes, waitFor } = require('./helpers/service')

const OPERATOR_TOKEN = 'hostile-test-operator-token'
const WORKER_TOKEN = 'hostile-test-worker-token'
const MiB = 1024 * 1024
// Long enough for an unbounded queue of answers to pass the bound twice over (without the byte
// bound the service grew by 70 to 80 MiB in 5 s here); a bounded connection stops costing
// memory once 256 KiB of answers wait, and what remains is the heap warming up (about 10 MiB).
const FLOOD_MS = 5000
const RSS_GROWTH_BOUND = 24 * MiB

const standin = new StandinState({ devices: [device(0), device(1)] })
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-hostile-'))
after(() => {
  stopAll()
  fs.rmSync(work, { recursive: true, force: true })
})

const { UPGRADE, KEY, HOST } = RAW
// Each is sent alone on a fresh connection to both ports (or to `port` alone); the answer's
// status is `status`, 400 unless said, and the connection is closed after it.
const MALFORMED = [
  { name: 'an unparsable target', bytes: `GET http://[::1 HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'an unparsable target with Authorization', bytes: `GET http://[::1 HTTP/1.1\r\n${HOST}Authorization: Bearer ${OPERATOR_TOKEN}\r\n\r\n` },
  { name: 'an unparsable target as an upgrade', bytes: `GET http://[::1 HTTP/1.1\r\n${HOST}${UPGRADE}${KEY}\r\n` },
  { name: 'an unparsable target as an upgrade with Authorization', bytes: `GET http://[::1 HTTP/1.1\r\n${HOST}${UPGRADE}${KEY}Authorization: Bearer ${OPERATOR_TOKEN}\r\n\r\n` },
  { name: 'an absolute-form target', bytes: `GET http://127.0.0.1/healthz HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'an absolute-form target as an upgrade', bytes: `GET ws://127.0.0.1/ HTTP/1.1\r\n${HOST}${UPGRADE}${KEY}\r\n` },
  { name: 'an authority-form CONNECT', bytes: `CONNECT 127.0.0.1:22 HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'an asterisk-form target', bytes: `OPTIONS * HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'a target without a slash', bytes: `GET healthz HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'a target with a space and a bad escape', bytes: `GET /%zz%/ x HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'an unknown method', bytes: `BREW /healthz HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'a method with a control byte', bytes: `G\x01T /healthz HTTP/1.1\r\n${HOST}\r\n` },
  { name: 'garbage', bytes: '\x00\xff\x13garbage\r\n\r\n' },
  { name: 'a bad HTTP version', bytes: `GET /healthz HTTP/9\r\n${HOST}\r\n` },
  { name: 'no Host', bytes: 'GET /healthz HTTP/1.1\r\n\r\n' },
  { name: 'a header without a colon', bytes: `GET /healthz HTTP/1.1\r\n${HOST}no colon here\r\n\r\n` },
  { name: 'a NUL in a header value', bytes: `GET /healthz HTTP/1.1\r\n${HOST}X-A: a\x00b\r\n\r\n` },
  { name: 'two Host headers', bytes: `GET /healthz HTTP/1.1\r\n${HOST}Host: evil.example\r\n\r\n` },
  { name: 'two Host headers as an upgrade', bytes: `GET / HTTP/1.1\r\n${HOST}Host: evil.example\r\n${UPGRADE}${KEY}\r\n`, port: 'ws' },
  { name: 'duplicate Content-Length', bytes: `POST /jobs HTTP/1.1\r\n${HOST}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}` },
  { name: 'Content-Length with Transfer-Encoding', bytes: `POST /jobs HTTP/1.1\r\n${HOST}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n` },
  { name: 'an oversized header', bytes: `GET /healthz HTTP/1.1\r\n${HOST}X-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`, status: 431 },
  { name: 'an upgrade with a bad Sec-WebSocket-Key', bytes: `GET / HTTP/1.1\r\n${HOST}${UPGRADE}Sec-WebSocket-Key: not-base64-and-short\r\n\r\n`, port: 'ws' },
  { name: 'an upgrade without Sec-WebSocket-Key', bytes: `GET / HTTP/1.1\r\n${HOST}${UPGRADE}\r\n`, port: 'ws' },
  { name: 'an upgrade with a bad version', bytes: `GET / HTTP/1.1\r\n${HOST}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 99\r\n${KEY}\r\n`, port: 'ws' },
]

const request = (id, method, params) => ({ jsonrpc: '2.0', id, method, params })
const alive = (service) => service.child.exitCode === null && service.child.signalCode === null
const portOf = (url) => Number(new URL(url).port)

async function assertServing(service, what) {
  assert.ok(alive(service), `the service died after ${what}:\n${service.output}`)
  const healthz = await http(`${service.httpUrl}/healthz`)
  assert.equal(healthz.status, 200, `/healthz after ${what}`)
}

const SERVICES = [
  { name: 'the example service', args: [MAIN] },
  { name: 'hpc-health serve', args: [CLI, 'serve'] },
]

for (const { name, args } of SERVICES) {
  describe(`${name} against hostile clients`, () => {
    let service
    before(async () => {
      const env = standin.env({
        HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY,
        HPC_HEALTH_STATE_DIR: fs.mkdtempSync(path.join(work, 'state-')),
        HPC_HEALTH_INTERVAL_MS: '100',
        HPC_HEALTH_RPC_TOKEN: OPERATOR_TOKEN,
        HPC_HEALTH_WORKER_TOKEN: WORKER_TOKEN,
      })
      service = await startService(env, args)
    })
    after(() => {
      service?.child.kill('SIGKILL')
      assert.doesNotMatch(service?.stderr ?? '', /uncaught|unhandled|ERR_INVALID_URL|^\s+at /im, 'no exception reached stderr')
    })

    test('malformed requests get a 400 (431 for an oversized header) and a closed connection on both ports; the service keeps serving', async () => {
      for (const [port, url] of [['http', service.httpUrl], ['ws', service.wsUrl]]) {
        for (const entry of MALFORMED.filter((e) => (e.port ?? port) === port)) {
          const { statusLine, closed } = await rawRequest(portOf(url), entry.bytes)
          assert.equal(statusLine.split(' ')[1], String(entry.status ?? 400), `${entry.name} on the ${port} port: got ${JSON.stringify(statusLine)}`)
          assert.ok(closed, `${entry.name} on the ${port} port: the connection is closed`)
          await assertServing(service, `${entry.name} on the ${port} port`)
        }
      }
    })

    test('a DNS-rebound name (Host not of this machine) is refused with 421 on every route and the upgrade; local names are served', async () => {
      const httpPort = portOf(service.httpUrl)
      const wsPort = portOf(service.wsUrl)
      for (const [port, target, extra] of [[httpPort, '/report', ''], [httpPort, '/metrics', ''], [httpPort, '/healthz', ''], [wsPort, '/', `${UPGRADE}${KEY}`]]) {
        for (const host of ['attacker.test', `attacker.test:${port}`, `127.0.0.1.attacker.test:${port}`, `user@127.0.0.1:${port}`]) {
          const { statusLine } = await rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`)
          assert.equal(statusLine.split(' ')[1], '421', `Host ${host} on ${target}: ${statusLine}`)
        }
      }
      for (const host of [`localhost:${httpPort}`, `127.0.0.1:${httpPort}`, `[::1]:${httpPort}`, 'localhost']) {
        const { statusLine } = await rawRequest(httpPort, `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
        assert.equal(statusLine.split(' ')[1], '200', `Host ${host}: ${statusLine}`)
      }
      await assertServing(service, 'rebound names')
    })

    test('a client that floods requests and never reads: memory stays bounded, the connection is held, others are served', { timeout: 30000 }, async () => {
      // Warm up: the first answers allocate what every later one reuses.
      const rpc = await connect(service.wsUrl)
      for (let i = 0; i < 50; i++) await rpc.call(request(i, 'getSystemHealth', { checkType: 'quick' }))
      rpc.close()
      const before = rssBytes(service.child.pid)
      const flood = await floodWithoutReading(portOf(service.wsUrl), FLOOD_MS)
      const growth = rssBytes(service.child.pid) - before
      try {
        assert.ok(growth < RSS_GROWTH_BOUND, `RSS grew by ${(growth / MiB).toFixed(1)} MiB during the flood (bound ${RSS_GROWTH_BOUND / MiB} MiB)`)
        assert.ok(flood.closedByServer || flood.stalled, 'the server stops reading a client that does not read (or closes it)')
        await assertServing(service, 'the flood')
        const other = await connect(service.wsUrl)
        assert.equal((await other.call(request('other', 'getSystemHealth'))).result.check_type, 'quick', 'another connection is answered meanwhile')
        other.close()
      } finally {
        flood.socket.destroy()
      }
    })

    test('a forged unauthenticated reportAllocatorStats is refused (-32001); the service stays ready', async () => {
      const anonymous = await connect(service.wsUrl)
      const forged = await anonymous.call(request(1, 'reportAllocatorStats', { device: 0, allocated: 0, reserved: 79e9 }))
      assert.equal(forged.error?.code, -32001, JSON.stringify(forged))
      assert.match(forged.error.message, /reportAllocatorStats/, 'the refusal names the method')
      anonymous.close()
      const checks = () => (service.output.match(/ check /g) || []).length
      const seen = checks()
      await waitFor('three more health checks', () => checks() >= seen + 3, 5000)
      assert.equal((await http(`${service.httpUrl}/readyz`)).status, 200)
      assert.doesNotMatch(service.output, /FRAGMENTATION_HIGH/, 'the report was not taken: no issue, no recovery')
    })

    test('the worker token may report allocator stats but not recover; the operator token may do both', async () => {
      const report = request(1, 'reportAllocatorStats', { device: 1, allocated: 2 ** 30, reserved: 2 ** 30 })
      const recover = request(2, 'recoverSystem', { errorType: 'process' })
      for (const [url, options] of [[service.wsUrl, { headers: { authorization: `Bearer ${WORKER_TOKEN}` } }], [`${service.wsUrl}/?token=${WORKER_TOKEN}`, {}]]) {
        const worker = await connect(url, options)
        assert.deepEqual((await worker.call(report)).result, { accepted: true })
        assert.equal((await worker.call(recover)).error?.code, -32001)
        worker.close()
      }
      const operator = await connect(service.wsUrl, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } })
      assert.deepEqual((await operator.call(report)).result, { accepted: true })
      assert.equal((await operator.call(recover)).result?.result, 'recovered')
      operator.close()
    })

    test('500 WebSocket and 500 HTTP connections at once: the service still answers', { timeout: 30000 }, async () => {
      const sockets = await Promise.all(Array.from({ length: 500 }, () => new Promise((resolve, reject) => {
        const socket = new WebSocket(service.wsUrl)
        socket.once('open', () => resolve(socket))
        socket.once('error', reject)
      })))
      // Half-sent HTTP requests, held open (slow clients).
      const held = await Promise.all(Array.from({ length: 500 }, () => new Promise((resolve) => {
        const socket = net.connect(portOf(service.httpUrl), '127.0.0.1', () => {
          socket.write(`GET /healthz HTTP/1.1\r\n${HOST}`)
          resolve(socket)
        })
        socket.on('error', () => {})
      })))
      try {
        await assertServing(service, '1000 connections')
        const rpc = await connect(service.wsUrl)
        assert.equal((await rpc.call(request(1, 'getSystemHealth'))).result.check_type, 'quick')
        rpc.close()
        // Every one of the 500 is served too.
        const answers = await Promise.all(sockets.map((socket, i) => new Promise((resolve) => {
          socket.once('message', (data) => resolve(JSON.parse(data.toString('utf8')).id))
          socket.send(JSON.stringify(request(i, 'ping')))
        })))
        assert.deepEqual(answers, sockets.map((_, i) => i))
      } finally {
        for (const socket of sockets) socket.terminate()
        for (const socket of held) socket.destroy()
      }
      await assertServing(service, 'the connections closed')
    })
  })
}
