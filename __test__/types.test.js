// The typings (index.d.ts) are checked the way a TypeScript user meets them: the example
// service in examples/typescript must type-check under `strict`, and a file with a
// deliberate type error must not, which proves the declarations are real types and not
// `any`. Needs the `typescript` devDependency (`npm install`).

const { test } = require('node:test')
const assert = require('node:assert')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.join(__dirname, '..')
const example = path.join(root, 'examples', 'typescript')
const tscBin = path.join(root, 'node_modules', '.bin', 'tsc')

/** Runs the project's own tsc (with this node) and returns { status, output }. */
function tsc(args, cwd = root) {
  if (!fs.existsSync(tscBin)) {
    assert.fail(`TypeScript is not installed (${tscBin} is missing): run \`npm install\`; typescript is a devDependency`)
  }
  const result = spawnSync(process.execPath, [fs.realpathSync(tscBin), ...args], { cwd, encoding: 'utf8', timeout: 120_000 })
  assert.ifError(result.error)
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}

/** tsc's diagnostics: `file(line,col): error TSnnnn: …` lines. */
function errors(output) {
  return output.split('\n').filter((line) => /error TS\d+/.test(line))
}

test('the TypeScript example type-checks against index.d.ts (strict)', () => {
  const { status, output } = tsc(['-p', example])
  assert.strictEqual(status, 0, `tsc -p examples/typescript failed:\n${output}`)
})

test('a type error against the typings is caught: they are not `any`', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-types-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.copyFileSync(path.join(example, 'should-fail.ts.txt'), path.join(dir, 'should-fail.ts'))
  // The example's settings (paths resolve relative to the file that defines them, so
  // 'hpc-health' is still this package's index.d.ts), for this one file.
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({ extends: path.join(example, 'tsconfig.json'), files: ['should-fail.ts'] }),
  )
  const { status, output } = tsc(['-p', dir], dir)
  assert.notStrictEqual(status, 0, `tsc accepted should-fail.ts:\n${output}`)
  const found = errors(output)
  assert.strictEqual(found.length, 1, `expected exactly the deliberate error:\n${output}`)
  assert.match(found[0], /should-fail\.ts\(6,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/)
})

test('index.d.ts declares every type it names', () => {
  const { status, output } = tsc(['--noEmit', '--strict', '--target', 'es2022', '--lib', 'es2022', path.join(root, 'index.d.ts')])
  assert.strictEqual(status, 0, `index.d.ts does not type-check on its own:\n${output}`)
})
