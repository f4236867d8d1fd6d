'use strict'
// MCP's Streamable HTTP transport (https://modelcontextprotocol.io/specification/2025-11-25/basic/transports)
// at /mcp on the service's HTTP listener, answered by supervisor.handleJsonRpc:
// - POST one JSON-RPC message: a request is answered 200 with one application/json response;
//   a notification or a response is accepted with 202 and no body. No SSE stream is offered,
//   so GET is 405; DELETE ends a session.
// - Sessions: `initialize` is answered with an `Mcp-Session-Id`, which every later request
//   must carry (400 without, 404 for an unknown or ended one); at most `maxMcpSessions` live
//   at once, each ending after `mcpSessionIdleMs` unused.
// - `MCP-Protocol-Version`, when sent, must be the revision the session negotiated (400 else);
//   absent, the client is taken to speak what it negotiated.
// - The control tools need the token as `Authorization: Bearer <token>` on each request
//   (authorizeFor decides, as for a WebSocket connection). Origin is checked by the listener.
const { randomUUID } = require('node:crypto')
const { readBody, sendJson } = require('./httpGuards')

// JSON-RPC codes this transport answers with itself (the dispatcher's, in src/rpc/error.rs).
const PARSE_ERROR = -32700
const INVALID_REQUEST = -32600
/** A server error (-32099..-32000): no room for another session. */
const TOO_MANY_SESSIONS = -32002

const SESSION_HEADER = 'mcp-session-id'
const VERSION_HEADER = 'mcp-protocol-version'
/** Longest piece of a header value echoed back in an error message. */
const MAX_ECHOED_CHARS = 64

const failure = (code, message) => ({ jsonrpc: '2.0', error: { code, message }, id: null })
const echo = (text) => JSON.stringify(text.length > MAX_ECHOED_CHARS ? `${text.slice(0, MAX_ECHOED_CHARS)}…` : text)

/** The live sessions by id: the protocol revision each negotiated, and when it was last used. */
class McpSessions {
  constructor({ maxMcpSessions, mcpSessionIdleMs }) {
    this.max = maxMcpSessions
    this.idleMs = mcpSessionIdleMs
    this.sessions = new Map()
  }

  /** A new session's id, or null when `max` sessions are live (after ending the idle ones). */
  open(protocolVersion) {
    const now = Date.now()
    for (const [id, session] of this.sessions) if (now - session.usedAt > this.idleMs) this.sessions.delete(id)
    if (this.sessions.size >= this.max) return null
    const id = randomUUID()
    this.sessions.set(id, { protocolVersion, usedAt: now })
    return id
  }

  /** The live session `id`, marked used; undefined for one unknown, ended or idle too long. */
  use(id) {
    const session = this.sessions.get(id)
    if (session === undefined) return undefined
    if (Date.now() - session.usedAt > this.idleMs) {
      this.sessions.delete(id)
      return undefined
    }
    session.usedAt = Date.now()
    return session
  }

  end(id) {
    return this.sessions.delete(id)
  }
}

/** Whether the body is declared JSON (`application/json`, parameters allowed). */
const isJson = (contentType = '') => contentType.split(';')[0].trim().toLowerCase() === 'application/json'

/**
 * The /mcp handler: `(req, res, target) => Promise<void>`. `authorizeFor(req, target)` returns
 * the `authorize` callback for the caller's token; `limits` has maxMessageBytes,
 * maxMcpSessions and mcpSessionIdleMs. Rejects with an error carrying `status` (413) for the
 * listener to answer.
 */
function createMcpEndpoint({ supervisor, authorizeFor, limits }) {
  const sessions = new McpSessions(limits)

  /** The session the request names, or null once it has been answered with 400 or 404. */
  function sessionOf(req, res) {
    const id = req.headers[SESSION_HEADER]
    if (id === undefined) {
      sendJson(res, 400, failure(INVALID_REQUEST, 'Invalid Request: no Mcp-Session-Id header: send initialize first'))
      return null
    }
    const session = sessions.use(id)
    if (session === undefined) {
      sendJson(res, 404, failure(INVALID_REQUEST, `Invalid Request: no MCP session ${echo(id)}: it ended, or never was; initialize again`))
      return null
    }
    return { id, ...session }
  }

  async function post(req, res, target) {
    if (!isJson(req.headers['content-type'])) {
      return sendJson(res, 415, failure(INVALID_REQUEST, 'Invalid Request: Content-Type must be application/json'))
    }
    const text = (await readBody(req, limits.maxMessageBytes)).toString('utf8')
    let message
    try {
      message = JSON.parse(text)
    } catch (error) {
      return sendJson(res, 400, failure(PARSE_ERROR, `Parse error: ${error.message}`))
    }
    // Since 2025-06-18 a POST carries one message; no client of this server's revisions needs batches.
    if (message === null || typeof message !== 'object' || Array.isArray(message)) {
      return sendJson(res, 400, failure(INVALID_REQUEST, 'Invalid Request: the body must be one JSON-RPC message (an object)'))
    }
    const initializing = message.method === 'initialize'
    if (!initializing) {
      const session = sessionOf(req, res)
      if (session === null) return
      const version = req.headers[VERSION_HEADER]
      if (version !== undefined && version !== session.protocolVersion) {
        return sendJson(res, 400, failure(INVALID_REQUEST, `Invalid Request: MCP-Protocol-Version ${echo(version)} is not this session's ${session.protocolVersion}`))
      }
      // A client's response (to a request this server never sends): accepted, nothing to do.
      if (!('method' in message) && ('result' in message || 'error' in message)) return res.writeHead(202).end()
    }
    const response = await supervisor.handleJsonRpc(text, { authorize: authorizeFor(req, target) })
    // null: a notification, which JSON-RPC answers with nothing.
    if (response === null) return res.writeHead(202).end()
    const headers = {}
    if (initializing && response.result) {
      const id = sessions.open(response.result.protocolVersion)
      if (id === null) {
        return sendJson(res, 503, failure(TOO_MANY_SESSIONS, `Server error: ${limits.maxMcpSessions} MCP sessions are open; end one (DELETE /mcp) or retry later`), { 'retry-after': '60' })
      }
      headers[SESSION_HEADER] = id
    }
    // A message the dispatcher could not take as a request is the client's fault: 400, as the transport says.
    const refused = response.error?.code === PARSE_ERROR || response.error?.code === INVALID_REQUEST
    sendJson(res, refused ? 400 : 200, response, headers)
  }

  function remove(req, res) {
    const session = sessionOf(req, res)
    if (session === null) return
    sessions.end(session.id)
    res.writeHead(204).end()
  }

  return async function handleMcp(req, res, target) {
    if (req.method === 'POST') return post(req, res, target)
    if (req.method === 'DELETE') return remove(req, res)
    // GET would open a server-to-client SSE stream, which this server has no use for.
    sendJson(res, 405, failure(INVALID_REQUEST, `Invalid Request: ${req.method} /mcp is not supported; POST messages, DELETE to end a session`), { allow: 'POST, DELETE' })
  }
}

module.exports = { createMcpEndpoint, McpSessions }
