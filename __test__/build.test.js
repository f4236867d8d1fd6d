'use strict'
// build.rs under cargo: a build that comes after a first one compiles nothing when nothing changed.
// @napi-rs/cli sets NAPI_FORCE_BUILD_<CRATE> (to the time) only on a first build, when its
// type-definition folder has no file for the crate yet; a build script that tracks the variable
// made the next build recompile the whole addon (minutes, in release with LTO). Building the
// addon twice here would cost those minutes, so the crate's own build.rs runs in a one-file
// crate, with the same napi-build and cargo.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const ROOT = path.join(__dirname, '..')
const CRATE = 'build_script_check'

function cargoBuild(dir, env) {
  const run = spawnSync('cargo', ['build', '--offline', '-v'], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 300000,
    // Shared with earlier runs: napi-build is compiled once.
    env: { ...process.env, CARGO_TARGET_DIR: path.join(ROOT, 'target', 'build-script-check'), ...env },
  })
  assert.equal(run.status, 0, run.stderr)
  return run.stderr
}

test('a second build after the first (forced) one does not recompile the crate', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-build-rs-'))
  const napiBuild = /^napi-build = .*$/m.exec(fs.readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8'))[0]
  fs.writeFileSync(path.join(dir, 'Cargo.toml'), `[package]\nname = "${CRATE}"\nversion = "0.1.0"\nedition = "2021"\n\n[build-dependencies]\n${napiBuild}\n\n[workspace]\n`)
  fs.copyFileSync(path.join(ROOT, 'Cargo.lock'), path.join(dir, 'Cargo.lock'))
  fs.copyFileSync(path.join(ROOT, 'build.rs'), path.join(dir, 'build.rs'))
  fs.mkdirSync(path.join(dir, 'src'))
  fs.writeFileSync(path.join(dir, 'src', 'lib.rs'), 'pub fn built() {}\n')
  const forceBuild = `NAPI_FORCE_BUILD_${CRATE.toUpperCase()}`
  const typeDefs = { NAPI_TYPE_DEF_TMP_FOLDER: path.join(dir, 'type-defs') }
  const compiles = (output) => new RegExp(`Running \`[^\`]*rustc --crate-name ${CRATE} `).test(output)
  // As @napi-rs/cli runs cargo: the first build with the variable set, the next ones without it.
  assert.ok(compiles(cargoBuild(dir, { ...typeDefs, [forceBuild]: String(Date.now()) })), 'the first build compiles')
  assert.ok(!compiles(cargoBuild(dir, typeDefs)), 'the second build compiles nothing')
  // A new type-definition folder (another profile, flags or checkout) still rebuilds, so the typings get written.
  assert.ok(compiles(cargoBuild(dir, { NAPI_TYPE_DEF_TMP_FOLDER: path.join(dir, 'other-type-defs') })))
  fs.rmSync(dir, { recursive: true, force: true })
})
