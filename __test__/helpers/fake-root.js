'use strict'
// A directory laid out like / with only the /proc and /sys files a test needs, for the
// monitors' `fsRoot` option.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

function makeFakeRoot(files) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-health-root-'))
  writeFiles(root, files)
  return root
}

function writeFiles(root, files) {
  for (const [relative, text] of Object.entries(files)) {
    const file = path.join(root, relative)
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.writeFileSync(file, text)
  }
}

const V2_MOUNTINFO = '24 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n'
const V1_MOUNTINFO = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory',
  '',
].join('\n')

module.exports = { makeFakeRoot, writeFiles, V2_MOUNTINFO, V1_MOUNTINFO }
