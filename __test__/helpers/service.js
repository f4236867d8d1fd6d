'use strict'
// Runs the example service (examples/hpc-service/main.js, or `hpc-health serve`) as a child
// process and talks to it: over WebSocket (plain JSON-RPC, or the MCP SDK through a small
// Transport), HTTP, and raw TCP for requests no HTTP client would send.
// Every wait is bounded, and every child is killed by `stopAll`.
const net = require('node:net')
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { randomBytes } = require('node:crypto')
const WebSocket = require('ws')

const MAIN = path.join(__dirname, '../../examples/hpc-service/main.js')
const CLI = path.join(__dirname, '../../bin/hpc-health.js')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const children = new Set()

async function waitFor(what, predicate, ms = 10000) {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(25)
  }
}

/**
 * Starts the service with `env` (`args`: the script and its arguments, e.g. `[CLI, 'serve']`);
 * resolves once it printed both addresses. `output` has stdout and stderr, `stderr` stderr alone.
 * `command` runs instead of node (e.g. npm, with `args` ['start']); `detached` gives the child its
 * own process group, so that a signal can reach it and its children at once, as Ctrl-C does.
 */
async function startService(env, args = [MAIN], { command = process.execPath, detached = false } = {}) {
  const child = spawn(command, args, { env, detached, cwd: path.join(__dirname, '../..'), stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  const service = { child, output: '', stderr: '' }
  child.stdout.on('data', (chunk) => { service.output += chunk })
  child.stderr.on('data', (chunk) => {
    service.output += chunk
    service.stderr += chunk
  })
  service.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    children.delete(child)
    resolve({ code, signal })
  }))
  let exited = false
  service.exited.then(() => { exited = true })
  await waitFor('the service to print its addresses', () => {
    if (/HTTP on (http:\S+)/.test(service.output) && /MCP on (ws:\S+)/.test(service.output)) return true
    if (exited) throw new Error(`the service exited early:\n${service.output}`)
    return false
  })
  service.httpUrl = /HTTP on (http:\S+)/.exec(service.output)[1]
  service.wsUrl = /MCP on (ws:\S+)/.exec(service.output)[1]
  return service
}

/** Kills every service still running (a test that failed half way leaves one). */
function stopAll() {
  for (const child of children) child.kill('SIGKILL')
}

/** An open WebSocket whose messages are queued, so that none is missed between awaits. */
async function connect(url, options = {}, protocols = []) {
  const socket = new WebSocket(url, protocols, options)
  const received = []
  socket.on('message', (data) => received.push(JSON.parse(data.toString('utf8'))))
  await new Promise((resolve, reject) => {
    socket.once('open', resolve)
    socket.once('error', reject)
  })
  return {
    socket,
    received,
    /** Sends `message` and resolves the response with `id`. */
    async call(message, id = message.id) {
      socket.send(typeof message === 'string' ? message : JSON.stringify(message))
      return waitFor(`response ${id}`, () => received.find((r) => !Array.isArray(r) && r.id === id), 5000)
    },
    close: () => socket.close(),
  }
}

/**
 * The smallest MCP Transport over a `ws` socket (the SDK's own WebSocket transport needs the
 * global WebSocket that Node 20 does not have).
 */
class WsTransport {
  constructor(socket) {
    this.socket = socket
  }

  async start() {
    this.socket.on('message', (data) => this.onmessage?.(JSON.parse(data.toString('utf8'))))
    this.socket.on('close', () => this.onclose?.())
    this.socket.on('error', (error) => this.onerror?.(error))
  }

  async send(message) {
    this.socket.send(JSON.stringify(message))
  }

  async close() {
    this.socket.close()
  }
}

async function http(url, init = {}) {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) })
  const text = await response.text()
  let json = null
  try { json = JSON.parse(text) } catch { /* not JSON: /metrics, /healthz */ }
  return { status: response.status, headers: response.headers, text, json }
}

/**
 * Writes `bytes` to `port` over raw TCP and resolves the first line the server answers ('' if it
 * closed without a word) once it closes or `ms` passed (`closed` says which).
 */
function rawRequest(port, bytes, ms = 3000) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let received = ''
    const done = (closed) => {
      clearTimeout(timer)
      socket.destroy()
      resolve({ statusLine: received.split('\r\n')[0], closed })
    }
    const timer = setTimeout(() => done(false), ms)
    socket.on('connect', () => socket.write(bytes))
    socket.on('data', (chunk) => { received += chunk.toString('latin1') })
    socket.on('error', () => {}) // a reset is a close; 'close' follows
    socket.on('close', () => done(true))
  })
}

/** Pieces of raw requests: the Host header, and the headers of a WebSocket upgrade. */
const RAW = {
  HOST: 'Host: 127.0.0.1\r\n',
  UPGRADE: 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n',
  KEY: 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n',
}

/** A masked client text frame (RFC 6455 5.2) carrying `text` (under 64 KiB). */
function clientFrame(text) {
  const payload = Buffer.from(text)
  const mask = randomBytes(4)
  const length = payload.length < 126 ? Buffer.from([0x80 | payload.length]) : Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff])
  return Buffer.concat([Buffer.from([0x81]), length, mask, payload.map((byte, i) => byte ^ mask[i % 4])])
}

/**
 * Opens a WebSocket over raw TCP and, never reading after the handshake, writes getSystemHealth
 * requests for `ms`, as fast as TCP takes them. Resolves `{ socket, closedByServer, stalled }`:
 * `stalled` when the last write had waited a second or more for the server to read.
 */
async function floodWithoutReading(port, ms) {
  const { HOST, UPGRADE, KEY } = RAW
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {}) // the server may reset it; 'close' says so
  let closedByServer = false
  socket.on('close', () => { closedByServer = true })
  socket.write(`GET / HTTP/1.1\r\n${HOST}${UPGRADE}${KEY}\r\n`)
  let handshake = ''
  await waitFor('the 101', () => {
    handshake += socket.read()?.toString('latin1') ?? ''
    return handshake.startsWith('HTTP/1.1 101')
  }, 5000)
  // Nothing more is read: the answers pile up in the kernel and in the server.
  const frames = Buffer.concat(Array.from({ length: 64 }, (_, i) => clientFrame(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'getSystemHealth', params: { checkType: 'quick' } }))))
  const deadline = Date.now() + ms
  let lastDrain = Date.now()
  while (Date.now() < deadline && !closedByServer) {
    if (socket.write(frames)) {
      await new Promise(setImmediate)
      continue
    }
    const drained = await Promise.race([new Promise((resolve) => socket.once('drain', () => resolve(true))), sleep(deadline - Date.now()).then(() => false)])
    if (drained) lastDrain = Date.now()
  }
  return { socket, closedByServer, stalled: Date.now() - lastDrain >= 1000 }
}

/** The child's resident set in bytes (VmRSS in /proc/<pid>/status). */
function rssBytes(pid) {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024
}

const postJob = (service, body) => http(`${service.httpUrl}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

module.exports = {
  MAIN, CLI, RAW, startService, stopAll, connect, WsTransport, http, rawRequest, floodWithoutReading, rssBytes, postJob, waitFor, sleep,
}
