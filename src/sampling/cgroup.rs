//! The memory limit and usage of this process's own cgroup, v1 or v2.
//!
//! A service under a 4 GiB container limit on a 512 GiB host must see 4 GiB: the limit is
//! the smallest one from the process's cgroup up to the top of the visible hierarchy, and
//! usage is that cgroup's own usage minus the file cache the kernel can drop
//! (`inactive_file`), the "working set" that kubelet and Docker report.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Values at or above this are v1's "unlimited" (`PAGE_COUNTER_MAX` pages, rounded to the
/// page size, which differs by architecture), never a real limit.
const V1_UNLIMITED_AT_LEAST: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    pub fn number(self) -> u32 {
        match self {
            CgroupVersion::V1 => 1,
            CgroupVersion::V2 => 2,
        }
    }
    fn limit_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        }
    }
    fn usage_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        }
    }
}

/// Where this process's memory cgroup lives in the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLocation {
    pub version: CgroupVersion,
    /// The path as `/proc/self/cgroup` writes it, e.g. `/kubepods/burstable/pod…/…`.
    pub cgroup_path: String,
    /// The directory of this process's cgroup.
    pub leaf_dir: PathBuf,
    /// The top of the hierarchy visible to this process (the cgroup mount point).
    pub top_dir: PathBuf,
}

/// One reading of the cgroup's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMemory {
    pub version: CgroupVersion,
    pub cgroup_path: String,
    /// The smallest limit from the process's cgroup up; `None` when every level is unlimited.
    pub limit: Option<u64>,
    /// Usage of the cgroup that holds the smallest limit (its children included), minus its
    /// inactive file pages. `None` when no level is limited.
    pub working_set: Option<u64>,
}

#[derive(Debug)]
pub enum CgroupError {
    Io { path: PathBuf, error: io::Error },
    Malformed { path: PathBuf, detail: String },
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgroupError::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            CgroupError::Malformed { path, detail } => write!(f, "malformed {}: {detail}", path.display()),
        }
    }
}

impl std::error::Error for CgroupError {}

fn read_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|error| CgroupError::Io { path: path.to_owned(), error })
}

fn malformed(path: &Path, detail: impl Into<String>) -> CgroupError {
    CgroupError::Malformed { path: path.to_owned(), detail: detail.into() }
}

/// A line of `/proc/self/cgroup`: `hierarchy-ID:controller-list:cgroup-path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroupEntry {
    pub hierarchy_id: u32,
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_proc_self_cgroup(text: &str) -> Option<Vec<ProcCgroupEntry>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            // The path may itself contain ':', so split at the first two only.
            let mut parts = line.splitn(3, ':');
            let hierarchy_id = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            if !path.starts_with('/') {
                return None;
            }
            Some(ProcCgroupEntry {
                hierarchy_id,
                controllers: controllers.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The fields of a `/proc/self/mountinfo` line this module needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The directory of the mounted filesystem that appears at `mount_point`.
    pub root: String,
    pub mount_point: String,
    pub fs_type: String,
    pub super_options: Vec<String>,
}

/// Parses mountinfo (proc(5)): `id parent major:minor root mount-point options [optional…] - fstype source super-options`.
pub fn parse_mountinfo(text: &str) -> Option<Vec<MountEntry>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut left = before.split(' ');
            let (_id, _parent, _dev) = (left.next()?, left.next()?, left.next()?);
            let root = unescape_mount_field(left.next()?);
            let mount_point = unescape_mount_field(left.next()?);
            let mut right = after.split(' ');
            let fs_type = right.next()?.to_owned();
            let _source = right.next()?;
            let super_options = right.next().unwrap_or("").split(',').map(str::to_owned).collect();
            Some(MountEntry { root, mount_point, fs_type, super_options })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value =
                (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Finds this process's memory cgroup under `root` (normally `/`). `Ok(None)` when the
/// process is in no memory cgroup this kernel exposes (no memory controller mounted).
/// A v1 memory hierarchy wins over v2: on hybrid hosts the controller can only be in one.
pub fn locate_memory_cgroup(root: &Path) -> Result<Option<CgroupLocation>, CgroupError> {
    let cgroup_file = root.join("proc/self/cgroup");
    let entries = parse_proc_self_cgroup(&read_file(&cgroup_file)?)
        .ok_or_else(|| malformed(&cgroup_file, "expected lines of id:controllers:/path"))?;
    let mountinfo_file = root.join("proc/self/mountinfo");
    let mounts = parse_mountinfo(&read_file(&mountinfo_file)?)
        .ok_or_else(|| malformed(&mountinfo_file, "expected mountinfo lines with a ' - ' separator"))?;

    if let Some(entry) = entries.iter().find(|e| e.controllers.iter().any(|c| c == "memory")) {
        let mount = mounts.iter().find(|m| m.fs_type == "cgroup" && m.super_options.iter().any(|o| o == "memory"));
        return Ok(mount.map(|m| place(root, CgroupVersion::V1, &entry.path, m)));
    }
    if let Some(entry) = entries.iter().find(|e| e.hierarchy_id == 0 && e.controllers.is_empty()) {
        if let Some(mount) = mounts.iter().find(|m| m.fs_type == "cgroup2") {
            let location = place(root, CgroupVersion::V2, &entry.path, mount);
            // The memory controller may be off for this subtree; then there is nothing to read.
            let enabled = location.leaf_dir.join("memory.current").exists()
                || read_file(&location.top_dir.join("cgroup.controllers"))
                    .map(|c| c.split_ascii_whitespace().any(|c| c == "memory"))
                    .unwrap_or(false);
            return Ok(enabled.then_some(location));
        }
    }
    Ok(None)
}

/// Maps a cgroup path onto the directory where it is mounted. Inside a container without a
/// cgroup namespace the mount's root is the container's own cgroup (`/docker/<id>`), which
/// is then a prefix of the path; with a namespace both are `/`.
fn place(root: &Path, version: CgroupVersion, cgroup_path: &str, mount: &MountEntry) -> CgroupLocation {
    let top_dir = root.join(mount.mount_point.trim_start_matches('/'));
    let relative = if mount.root == "/" {
        Some(cgroup_path)
    } else {
        cgroup_path.strip_prefix(mount.root.as_str()).filter(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    // Anything else (e.g. `/../..` from a namespace created after the move) cannot be mapped
    // below the mount; the mount point is the best place left to read.
    let leaf_dir = match relative {
        Some(rel) => rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != "." && *c != "..")
            .fold(top_dir.clone(), |dir, component| dir.join(component)),
        None => top_dir.clone(),
    };
    CgroupLocation { version, cgroup_path: cgroup_path.to_owned(), leaf_dir, top_dir }
}

/// Parses a limit file: `max` (v2) or a byte count; `None` means unlimited.
pub fn parse_memory_limit(version: CgroupVersion, text: &str) -> Result<Option<u64>, String> {
    let value = text.trim();
    if version == CgroupVersion::V2 && value == "max" {
        return Ok(None);
    }
    let bytes: u64 = value.parse().map_err(|_| format!("expected a byte count, got {value:?}"))?;
    Ok((bytes < V1_UNLIMITED_AT_LEAST).then_some(bytes))
}

/// Parses a byte-count file (`memory.current`, `memory.usage_in_bytes`).
pub fn parse_byte_count(text: &str) -> Result<u64, String> {
    let value = text.trim();
    value.parse().map_err(|_| format!("expected a byte count, got {value:?}"))
}

/// The reclaimable file cache in `memory.stat`: v1's hierarchical `total_inactive_file`
/// where present, else `inactive_file` (v2 is always hierarchical).
pub fn parse_inactive_file(text: &str) -> Result<u64, String> {
    let mut local = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else { continue };
        let slot = match key {
            "total_inactive_file" => return value.trim().parse().map_err(|_| format!("bad {key} {value:?}")),
            "inactive_file" => &mut local,
            _ => continue,
        };
        *slot = Some(value.trim().parse::<u64>().map_err(|_| format!("bad {key} {value:?}"))?);
    }
    local.ok_or_else(|| "no inactive_file line".to_owned())
}

/// The smallest limit up the hierarchy and the cgroup directory that sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TightestLimit {
    pub limit: u64,
    pub dir: PathBuf,
}

/// Reads the limit at every level from the process's cgroup to the top of the hierarchy.
/// A level whose limit file is absent (the v2 root has none) counts as unlimited; the
/// leaf's must exist, or the process has moved.
pub fn read_tightest_limit(location: &CgroupLocation) -> Result<Option<TightestLimit>, CgroupError> {
    let version = location.version;
    let mut tightest: Option<TightestLimit> = None;
    let mut dir: &Path = &location.leaf_dir;
    loop {
        let limit_path = dir.join(version.limit_file());
        match std::fs::read_to_string(&limit_path) {
            Ok(text) => {
                let limit = parse_memory_limit(version, &text).map_err(|d| malformed(&limit_path, d))?;
                if let Some(limit) = limit {
                    if tightest.as_ref().is_none_or(|t| limit < t.limit) {
                        tightest = Some(TightestLimit { limit, dir: dir.to_owned() });
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound && dir != location.leaf_dir => {}
            Err(error) => return Err(CgroupError::Io { path: limit_path, error }),
        }
        if dir == location.top_dir {
            break;
        }
        match dir.parent() {
            Some(parent) if parent.starts_with(&location.top_dir) => dir = parent,
            _ => break,
        }
    }
    Ok(tightest)
}

/// Usage of the cgroup at `dir` (its children included) minus its inactive file pages.
pub fn read_working_set(version: CgroupVersion, dir: &Path) -> Result<u64, CgroupError> {
    let usage_path = dir.join(version.usage_file());
    let usage = parse_byte_count(&read_file(&usage_path)?).map_err(|d| malformed(&usage_path, d))?;
    let stat_path = dir.join("memory.stat");
    let inactive = parse_inactive_file(&read_file(&stat_path)?).map_err(|d| malformed(&stat_path, d))?;
    Ok(usage.saturating_sub(inactive))
}

/// The limit and working set, read now.
pub fn read_cgroup_memory(location: &CgroupLocation) -> Result<CgroupMemory, CgroupError> {
    let tightest = read_tightest_limit(location)?;
    let working_set = tightest.as_ref().map(|t| read_working_set(location.version, &t.dir)).transpose()?;
    Ok(CgroupMemory {
        version: location.version,
        cgroup_path: location.cgroup_path.clone(),
        limit: tightest.map(|t| t.limit),
        working_set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake root with `/proc/self/{cgroup,mountinfo}` and cgroup files.
    struct FakeRoot(tempfile::TempDir);

    impl FakeRoot {
        fn new(proc_cgroup: &str, mountinfo: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("proc/self")).unwrap();
            fs::write(dir.path().join("proc/self/cgroup"), proc_cgroup).unwrap();
            fs::write(dir.path().join("proc/self/mountinfo"), mountinfo).unwrap();
            FakeRoot(dir)
        }
        fn write(&self, relative: &str, text: &str) {
            let path = self.0.path().join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    const V2_MOUNTINFO: &str = "24 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
    const V1_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V2_STAT: &str = "anon 104857600\nfile 209715200\nactive_file 52428800\ninactive_file 157286400\nslab 1000\n";
    const V1_STAT: &str = "cache 209715200\nrss 104857600\ninactive_file 1000\nhierarchical_memory_limit 4294967296\ntotal_inactive_file 157286400\n";

    #[test]
    fn v2_nested_smallest_limit_wins_and_usage_is_of_that_level() {
        let root = FakeRoot::new("0::/kubepods/pod1/ctr\n", V2_MOUNTINFO);
        root.write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
        root.write("sys/fs/cgroup/kubepods/memory.max", "max\n");
        root.write("sys/fs/cgroup/kubepods/pod1/memory.max", "4294967296\n");
        root.write("sys/fs/cgroup/kubepods/pod1/memory.current", "1073741824\n");
        root.write("sys/fs/cgroup/kubepods/pod1/memory.stat", V2_STAT);
        root.write("sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "max\n");
        root.write("sys/fs/cgroup/kubepods/pod1/ctr/memory.current", "500\n");
        let location = locate_memory_cgroup(root.path()).unwrap().unwrap();
        assert_eq!(location.version, CgroupVersion::V2);
        assert_eq!(location.leaf_dir, root.path().join("sys/fs/cgroup/kubepods/pod1/ctr"));
        let memory = read_cgroup_memory(&location).unwrap();
        assert_eq!(memory.limit, Some(4 << 30));
        assert_eq!(memory.working_set, Some((1 << 30) - 157286400));
        assert_eq!(memory.cgroup_path, "/kubepods/pod1/ctr");
    }

    #[test]
    fn v2_leaf_limit_smaller_than_parent() {
        let root = FakeRoot::new("0::/a/b\n", V2_MOUNTINFO);
        root.write("sys/fs/cgroup/a/memory.max", "8589934592\n");
        root.write("sys/fs/cgroup/a/b/memory.max", "536870912\n");
        root.write("sys/fs/cgroup/a/b/memory.current", "268435456\n");
        root.write("sys/fs/cgroup/a/b/memory.stat", "inactive_file 0\n");
        let memory = read_cgroup_memory(&locate_memory_cgroup(root.path()).unwrap().unwrap()).unwrap();
        assert_eq!(memory.limit, Some(512 << 20));
        assert_eq!(memory.working_set, Some(256 << 20));
    }

    #[test]
    fn v2_unlimited_everywhere() {
        let root = FakeRoot::new("0::/user.slice\n", V2_MOUNTINFO);
        root.write("sys/fs/cgroup/user.slice/memory.max", "max\n");
        root.write("sys/fs/cgroup/user.slice/memory.current", "123\n");
        let memory = read_cgroup_memory(&locate_memory_cgroup(root.path()).unwrap().unwrap()).unwrap();
        assert_eq!(memory.limit, None);
        assert_eq!(memory.working_set, None);
    }

    #[test]
    fn v2_namespaced_root_cgroup() {
        // Inside a container with a cgroup namespace: the process sits at "/" of the mount.
        let root = FakeRoot::new("0::/\n", V2_MOUNTINFO);
        root.write("sys/fs/cgroup/cgroup.controllers", "memory\n");
        root.write("sys/fs/cgroup/memory.max", "2147483648\n");
        root.write("sys/fs/cgroup/memory.current", "1073741824\n");
        root.write("sys/fs/cgroup/memory.stat", "inactive_file 1073741824\n");
        let memory = read_cgroup_memory(&locate_memory_cgroup(root.path()).unwrap().unwrap()).unwrap();
        assert_eq!(memory.limit, Some(2 << 30));
        assert_eq!(memory.working_set, Some(0));
    }

    #[test]
    fn v2_without_memory_controller_is_none() {
        let root = FakeRoot::new("0::/x\n", V2_MOUNTINFO);
        root.write("sys/fs/cgroup/cgroup.controllers", "cpu io\n");
        fs::create_dir_all(root.path().join("sys/fs/cgroup/x")).unwrap();
        assert_eq!(locate_memory_cgroup(root.path()).unwrap(), None);
    }

    #[test]
    fn v1_docker_without_namespace_strips_mount_root() {
        let mountinfo = "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n";
        let root = FakeRoot::new("12:memory:/docker/abc\n11:cpu,cpuacct:/docker/abc\n0::/docker/abc\n", mountinfo);
        root.write("sys/fs/cgroup/memory/memory.limit_in_bytes", "4294967296\n");
        root.write("sys/fs/cgroup/memory/memory.usage_in_bytes", "2147483648\n");
        root.write("sys/fs/cgroup/memory/memory.stat", V1_STAT);
        let location = locate_memory_cgroup(root.path()).unwrap().unwrap();
        assert_eq!(location.version, CgroupVersion::V1);
        assert_eq!(location.leaf_dir, root.path().join("sys/fs/cgroup/memory"));
        let memory = read_cgroup_memory(&location).unwrap();
        assert_eq!(memory.limit, Some(4 << 30));
        assert_eq!(memory.working_set, Some((2 << 30) - 157286400));
    }

    #[test]
    fn v1_hybrid_host_prefers_v1_memory_and_treats_huge_as_unlimited() {
        let root = FakeRoot::new("9:name=systemd:/\n4:memory:/process_api/9be9\n1:cpu:/\n0::/\n", V1_MOUNTINFO);
        root.write("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
        root.write("sys/fs/cgroup/memory/process_api/memory.limit_in_bytes", "9223372036854771712\n");
        root.write("sys/fs/cgroup/memory/process_api/9be9/memory.limit_in_bytes", "9223372036854771712\n");
        let location = locate_memory_cgroup(root.path()).unwrap().unwrap();
        assert_eq!(location.version, CgroupVersion::V1);
        let memory = read_cgroup_memory(&location).unwrap();
        assert_eq!(memory.limit, None);
        // A limit set on the middle level applies to the leaf below it.
        root.write("sys/fs/cgroup/memory/process_api/memory.limit_in_bytes", "536870912\n");
        root.write("sys/fs/cgroup/memory/process_api/memory.usage_in_bytes", "300000000\n");
        root.write("sys/fs/cgroup/memory/process_api/memory.stat", "inactive_file 50000000\n");
        let memory = read_cgroup_memory(&location).unwrap();
        assert_eq!(memory.limit, Some(512 << 20));
        assert_eq!(memory.working_set, Some(250_000_000));
    }

    #[test]
    fn no_memory_controller_at_all() {
        let mountinfo = "24 1 0:22 / / rw - ext4 /dev/vda rw\n";
        let root = FakeRoot::new("1:cpu:/\n", mountinfo);
        assert_eq!(locate_memory_cgroup(root.path()).unwrap(), None);
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        for proc_cgroup in ["nonsense\n", "x:memory:/a\n", "4:memory:relative\n"] {
            let root = FakeRoot::new(proc_cgroup, V1_MOUNTINFO);
            assert!(matches!(locate_memory_cgroup(root.path()), Err(CgroupError::Malformed { .. })), "{proc_cgroup:?}");
        }
        let root = FakeRoot::new("4:memory:/\n", "no separator here\n");
        assert!(matches!(locate_memory_cgroup(root.path()), Err(CgroupError::Malformed { .. })));

        let root = FakeRoot::new("0::/a\n", V2_MOUNTINFO);
        root.write("sys/fs/cgroup/a/memory.current", "1\n");
        for bad_limit in ["", "lots\n", "-5\n", "1.5G\n"] {
            root.write("sys/fs/cgroup/a/memory.max", bad_limit);
            let location = locate_memory_cgroup(root.path()).unwrap().unwrap();
            assert!(matches!(read_cgroup_memory(&location), Err(CgroupError::Malformed { .. })), "{bad_limit:?}");
        }
        root.write("sys/fs/cgroup/a/memory.max", "1000\n");
        root.write("sys/fs/cgroup/a/memory.stat", "anon 1\n");
        let location = locate_memory_cgroup(root.path()).unwrap().unwrap();
        assert!(matches!(read_cgroup_memory(&location), Err(CgroupError::Malformed { .. })));
    }

    #[test]
    fn vanished_leaf_is_an_io_error() {
        let root = FakeRoot::new("0::/gone\n", V2_MOUNTINFO);
        root.write("sys/fs/cgroup/cgroup.controllers", "memory\n");
        let location = locate_memory_cgroup(root.path()).unwrap().unwrap();
        assert!(matches!(read_cgroup_memory(&location), Err(CgroupError::Io { .. })));
        assert!(matches!(locate_memory_cgroup(Path::new("/nonexistent-root")), Err(CgroupError::Io { .. })));
    }

    #[test]
    fn mountinfo_escapes_and_optional_fields() {
        let text = "36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n";
        let mounts = parse_mountinfo(text).unwrap();
        assert_eq!(mounts[0].mount_point, "/mnt with space");
        assert_eq!(mounts[0].root, "/mnt1");
        assert_eq!(mounts[0].fs_type, "ext3");
        assert_eq!(mounts[0].super_options, vec!["rw", "errors=continue"]);
    }

    #[test]
    fn proc_cgroup_paths_may_contain_colons() {
        let entries = parse_proc_self_cgroup("0::/a:b/c\n").unwrap();
        assert_eq!(entries[0].path, "/a:b/c");
        assert!(entries[0].controllers.is_empty());
    }

    #[test]
    fn limit_and_stat_parsers() {
        assert_eq!(parse_memory_limit(CgroupVersion::V2, "max\n"), Ok(None));
        assert!(parse_memory_limit(CgroupVersion::V1, "max\n").is_err());
        assert_eq!(parse_memory_limit(CgroupVersion::V1, "9223372036854771712"), Ok(None));
        assert_eq!(parse_memory_limit(CgroupVersion::V1, "9223372036854775807"), Ok(None));
        assert_eq!(parse_memory_limit(CgroupVersion::V1, "4096"), Ok(Some(4096)));
        assert_eq!(parse_inactive_file(V1_STAT), Ok(157286400));
        assert_eq!(parse_inactive_file(V2_STAT), Ok(157286400));
        assert!(parse_inactive_file("inactive_file x\n").is_err());
    }

    #[test]
    fn this_machine_does_not_fail() {
        // Whatever this host has, reading it must give an answer, not an error.
        if let Some(location) = locate_memory_cgroup(Path::new("/")).unwrap() {
            let memory = read_cgroup_memory(&location).unwrap();
            if let (Some(limit), Some(ws)) = (memory.limit, memory.working_set) {
                assert!(limit > 0 && ws < u64::MAX);
            }
        }
    }
}
