//! Pressure stall information from `/proc/pressure/memory`.

use std::io;
use std::path::Path;

/// The share of the last 10 s in which some (`some`) or all (`full`) non-idle tasks stalled
/// on memory, in percent, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryPsi {
    pub some_avg10: f64,
    pub full_avg10: f64,
}

/// Reads `/proc/pressure/memory` under `root`. `Ok(None)` where the kernel has no PSI
/// (file missing, or `EOPNOTSUPP` when PSI is compiled in but disabled at boot).
pub fn read_memory_psi(root: &Path) -> io::Result<Option<MemoryPsi>> {
    match std::fs::read_to_string(root.join("proc/pressure/memory")) {
        Ok(text) => parse_memory_psi(&text)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/pressure/memory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses the PSI text. Kernels before 5.2's `full` line for memory have only `some`;
/// `full` is then 0, which is what it would read on an idle machine.
pub fn parse_memory_psi(text: &str) -> Option<MemoryPsi> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        let avg10 = fields.find_map(|f| f.strip_prefix("avg10="))?;
        let value: f64 = avg10.parse().ok()?;
        if !value.is_finite() || value < 0.0 {
            return None;
        }
        *slot = Some(value);
    }
    Some(MemoryPsi { some_avg10: some?, full_avg10: full.unwrap_or(0.0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_output() {
        let text = "some avg10=1.25 avg60=0.50 avg300=0.10 total=123456\n\
                    full avg10=0.75 avg60=0.20 avg300=0.05 total=65432\n";
        assert_eq!(parse_memory_psi(text), Some(MemoryPsi { some_avg10: 1.25, full_avg10: 0.75 }));
    }

    #[test]
    fn some_only_is_accepted() {
        assert_eq!(
            parse_memory_psi("some avg10=3.00 avg60=0.00 avg300=0.00 total=0\n"),
            Some(MemoryPsi { some_avg10: 3.0, full_avg10: 0.0 })
        );
    }

    #[test]
    fn malformed_is_rejected() {
        for text in [
            "",
            "garbage",
            "some avg10=abc avg60=0 avg300=0 total=0",
            "some avg60=0.00 total=0",
            "some avg10=-1.0 avg60=0 avg300=0 total=0",
            "some avg10=NaN avg60=0 avg300=0 total=0",
            "full avg10=1.00 avg60=0 avg300=0 total=0",
        ] {
            assert_eq!(parse_memory_psi(text), None, "{text:?}");
        }
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_memory_psi(dir.path()).unwrap(), None);
        std::fs::create_dir_all(dir.path().join("proc/pressure")).unwrap();
        std::fs::write(dir.path().join("proc/pressure/memory"), "nonsense").unwrap();
        assert!(read_memory_psi(dir.path()).is_err());
    }
}
