'use strict'
// The service's two listeners, both on 127.0.0.1 only:
// - a WebSocket JSON-RPC 2.0 / MCP endpoint answered by supervisor.handleJsonRpc, where
//   recoverSystem needs the operator token;
// - plain HTTP for the orchestrator and Prometheus: /metrics, /healthz, /readyz, /jobs.
const http = require('node:http')
const { timingSafeEqual } = require('node:crypto')
const { WebSocketServer } = require('ws')

const HOST = '127.0.0.1'
const MAX_MESSAGE_BYTES = 1024 * 1024 // the dispatcher refuses more anyway; ws closes earlier
const MAX_JOB_BODY_BYTES = 64 * 1024
// Requests one connection may have in flight; past it the socket stops being read (TCP
// pushes back on the client) until answers go out. Nothing is dropped.
const MAX_IN_FLIGHT_PER_CONNECTION = 16

/** The token the upgrade request presented: `Authorization: Bearer <token>` or `?token=`. */
function presentedToken(request) {
  const header = /^Bearer (.+)$/i.exec(request.headers.authorization || '')
  if (header) return header[1].trim()
  return new URL(request.url, `http://${HOST}`).searchParams.get('token')
}

/** Constant-time comparison; no configured token means nobody may recover. */
function tokenMatches(expected, presented) {
  if (!expected || !presented) return false
  const a = Buffer.from(expected)
  const b = Buffer.from(presented)
  return a.length === b.length && timingSafeEqual(a, b)
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, HOST, () => {
      server.off('error', reject)
      resolve(server.address().port)
    })
  })
}

function startWebSocket({ supervisor, port, token, log }) {
  const httpServer = http.createServer((req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('WebSocket only\n')
  })
  const wss = new WebSocketServer({
    server: httpServer,
    maxPayload: MAX_MESSAGE_BYTES,
    // The MCP SDK's WebSocket transport asks for the "mcp" subprotocol; plain JSON-RPC clients ask for none.
    handleProtocols: (protocols) => (protocols.has('mcp') ? 'mcp' : false),
  })
  wss.on('connection', (socket, request) => {
    const authorized = tokenMatches(token, presentedToken(request))
    const authorize = () => authorized
    socket.on('error', (error) => log(`ws: ${error.message}`)) // e.g. a message over maxPayload; ws closes the socket
    let inFlight = 0
    // Messages ws had already read when the socket was paused; bounded by what one read holds.
    const waiting = []
    const answer = async (data) => {
      inFlight++
      try {
        const response = await supervisor.handleJsonRpc(data.toString('utf8'), { authorize })
        // null: only notifications, which JSON-RPC answers with nothing.
        if (response !== null && socket.readyState === socket.OPEN) socket.send(JSON.stringify(response))
      } catch (error) {
        log(`ws: ${error.message}`)
      } finally {
        inFlight--
        if (waiting.length > 0) answer(waiting.shift())
        else if (socket.isPaused) socket.resume()
      }
    }
    socket.on('message', (data) => {
      if (inFlight < MAX_IN_FLIGHT_PER_CONNECTION) return answer(data)
      waiting.push(data)
      socket.pause()
    })
  })
  return { httpServer, wss, port: listen(httpServer, port) }
}

function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body) + '\n')
}

async function readJson(req) {
  let size = 0
  const chunks = []
  for await (const chunk of req) {
    size += chunk.length
    if (size > MAX_JOB_BODY_BYTES) throw Object.assign(new Error(`body over ${MAX_JOB_BODY_BYTES} bytes`), { status: 413 })
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  let body
  try {
    body = text.trim() === '' ? {} : JSON.parse(text)
  } catch {
    throw Object.assign(new Error('body is not JSON'), { status: 400 })
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw Object.assign(new Error('body must be a JSON object'), { status: 400 })
  return body
}

function startHttp({ supervisor, jobs, port, log }) {
  const routes = {
    'GET /metrics': (req, res) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(supervisor.metrics()),
    // Liveness: answering at all is the signal; a failing GPU is for readiness, not for a restart loop.
    'GET /healthz': (req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'),
    'GET /readyz': (req, res) => {
      const reasons = jobs.pausedReasons()
      sendJson(res, reasons.length === 0 ? 200 : 503, { ready: reasons.length === 0, state: supervisor.status().state, reasons })
    },
    'GET /jobs': (req, res) => sendJson(res, 200, jobs.snapshot()),
    'POST /jobs': async (req, res) => {
      const body = await readJson(req)
      const submitted = await jobs.submit(body)
      if (submitted.refused) return sendJson(res, 503, { error: 'intake paused', reasons: submitted.refused }, { 'retry-after': '30' })
      sendJson(res, 202, submitted.job)
    },
  }
  const server = http.createServer(async (req, res) => {
    const route = routes[`${req.method} ${new URL(req.url, `http://${HOST}`).pathname}`]
    if (!route) return sendJson(res, 404, { error: `no route ${req.method} ${req.url}` })
    try {
      await route(req, res)
    } catch (error) {
      const status = error.status || (error instanceof RangeError ? 400 : 500)
      if (status === 500) log(`http: ${req.method} ${req.url}: ${error.stack}`)
      if (!res.headersSent) sendJson(res, status, { error: error.message })
    }
  })
  return { server, port: listen(server, port) }
}

/**
 * Starts both listeners; resolves `{ wsUrl, httpUrl, close }`. Port 0 picks a free port.
 */
async function startServers({ supervisor, jobs, wsPort = 0, httpPort = 0, token, log = () => {} }) {
  const ws = startWebSocket({ supervisor, port: wsPort, token, log })
  const web = startHttp({ supervisor, jobs, port: httpPort, log })
  async function close() {
    for (const client of ws.wss.clients) client.terminate()
    ws.wss.close()
    web.server.closeAllConnections()
    await Promise.all([new Promise((resolve) => ws.httpServer.close(resolve)), new Promise((resolve) => web.server.close(resolve))])
  }
  const [wsBound, httpBound] = await Promise.allSettled([ws.port, web.port])
  const failed = [wsBound, httpBound].find((r) => r.status === 'rejected')
  if (failed) {
    await close() // the one that did start must not keep the process alive
    throw failed.reason
  }
  return { wsUrl: `ws://${HOST}:${wsBound.value}`, httpUrl: `http://${HOST}:${httpBound.value}`, close }
}

module.exports = { startServers, MAX_IN_FLIGHT_PER_CONNECTION }
