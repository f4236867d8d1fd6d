'use strict'
// Every JavaScript code block of README.md and docs/*.md runs as written, so the manual cannot
// rot. A block fenced ```js (or ```javascript) is written to a fresh temporary directory and run
// there with node, where `require('hpc-health')` is this repository, the GPUs are the stand-in's
// (two healthy devices) and `./var` is that directory's own; it must exit 0 within the timeout.
//
// Blocks that are not meant to run carry another fence language: ```sh for commands, ```text
// for output, ```yaml for configuration. A JavaScript fragment that cannot stand alone is
// fenced ```js fragment: highlighted as JavaScript, not run. The test lists those it skips.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { STANDIN_LIBRARY, StandinState, device } = require('./helpers/standin')

const ROOT = path.join(__dirname, '..')
const RUN_TIMEOUT_MS = 60000
const RUNNABLE = new Set(['js', 'javascript'])
const FRAGMENT_MARKER = 'fragment'

/** The documentation files: README.md, then docs/*.md in name order. */
function docFiles() {
  const docs = path.join(ROOT, 'docs')
  const inDocs = fs.existsSync(docs) ? fs.readdirSync(docs).filter((f) => f.endsWith('.md')).sort().map((f) => path.join('docs', f)) : []
  return ['README.md', ...inDocs]
}

/**
 * The fenced code blocks of a Markdown text: `{ line, info, code }`, `line` the 1-based line of
 * the opening fence. A fence is three or more backticks or tildes; it closes with at least as
 * many of the same character.
 */
function codeBlocks(text) {
  const blocks = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^ {0,3}(`{3,}|~{3,})\s*(.*)$/.exec(lines[i])
    if (!open) continue
    const fence = open[1]
    const body = []
    let j = i + 1
    for (; j < lines.length; j++) {
      const close = new RegExp(`^ {0,3}${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`)
      if (close.test(lines[j])) break
      body.push(lines[j])
    }
    blocks.push({ line: i + 1, info: open[2].trim(), code: body.join('\n') + '\n' })
    i = j
  }
  return blocks
}

const isRunnable = (info) => {
  const [language, ...rest] = info.split(/\s+/)
  return RUNNABLE.has(language.toLowerCase()) && !rest.includes(FRAGMENT_MARKER)
}

test('the block extractor finds fences, their languages and lines', () => {
  const blocks = codeBlocks('# t\n```js\na()\n```\ntext\n````sh\n```\nx\n````\n```js fragment\nb\n```\n')
  assert.deepEqual(blocks, [
    { line: 2, info: 'js', code: 'a()\n' },
    { line: 6, info: 'sh', code: '```\nx\n' },
    { line: 10, info: 'js fragment', code: 'b\n' },
  ])
  assert.deepEqual(blocks.map((b) => isRunnable(b.info)), [true, false, false])
})

const standin = new StandinState({ devices: [device(0), device(1)] })

/** Runs one block in its own directory; resolves the child's result. */
function runBlock(code) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-doc-'))
  fs.mkdirSync(path.join(dir, 'node_modules'))
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'hpc-health'), 'dir')
  fs.writeFileSync(path.join(dir, 'example.js'), code)
  try {
    return spawnSync(process.execPath, ['example.js'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
      killSignal: 'SIGKILL',
      env: standin.env({
        HPC_HEALTH_NVML_LIBRARY: STANDIN_LIBRARY,
        HPC_HEALTH_STATE_DIR: path.join(dir, 'var'),
        // The package's own dependencies (ws) for blocks that use them as a service would.
        NODE_PATH: path.join(ROOT, 'node_modules'),
        NO_COLOR: '1',
      }),
    })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const files = docFiles()
const skipped = []
let runnableInReadme = 0
for (const file of files) {
  for (const block of codeBlocks(fs.readFileSync(path.join(ROOT, file), 'utf8'))) {
    if (!isRunnable(block.info)) {
      if (/^(js|javascript)\b/i.test(block.info)) skipped.push(`${file}:${block.line}`)
      continue
    }
    if (file === 'README.md') runnableInReadme++
    test(`${file}:${block.line} runs as written`, () => {
      const child = runBlock(block.code)
      const why = child.error ? `${child.error.code ?? child.error.message}${child.signal ? ` (${child.signal})` : ''}` : `exit ${child.status}${child.signal ? `, ${child.signal}` : ''}`
      assert.ok(child.status === 0,
        `the code block at ${file}:${block.line} failed (${why}):\n${child.stderr || ''}${child.stdout ? `\nstdout:\n${child.stdout}` : ''}`)
    })
  }
}

test('README.md has code blocks that run; fragments that do not are listed', () => {
  assert.ok(runnableInReadme > 0, 'README.md has at least one ```js block')
  if (skipped.length > 0) test.diagnostic(`not run (js fragment): ${skipped.join(', ')}`)
})

test.after(() => fs.rmSync(standin.dir, { recursive: true, force: true }))
