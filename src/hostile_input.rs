use crate::durable::*;
use std::fs;
use std::time::Instant;

#[test]
fn exp_incident_seq_max() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("inc");
    fs::create_dir(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(dir.join("incidents-00000000000000000001.jsonl"),
        "{\"seq\":18446744073709551615,\"timestamp\":1,\"kind\":\"k\",\"severity\":\"info\",\"message\":\"m\",\"details\":null}\n").unwrap();
    let r = std::panic::catch_unwind(|| IncidentLog::open(&dir, IncidentLogOptions::default(), Storage::new()).map(|(_, p)| p));
    eprintln!("incident seq max: {:?}", r.as_ref().map(|r| r.as_ref().map(|p| p.len())).map_err(|_| "PANIC"));
}

#[test]
fn exp_journal_quadratic() {
    for size in [16usize << 10, 64 << 10, 256 << 10] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("j");
        drop(Journal::open(&dir, JournalOptions::default(), Storage::new()).unwrap());
        let mut bytes = vec![0u8; size];
        // first frame bad: length 0
        let len = (size / 2) as u32;
        let mut at = 1;
        while at + 9 < size {
            bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
            bytes[at + 8] = b'{';
            at += 10;
        }
        let name = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).find(|n| n.starts_with("journal-")).unwrap();
        fs::write(dir.join(name), &bytes).unwrap();
        let t = Instant::now();
        let (_, problems) = Journal::open(&dir, JournalOptions::default(), Storage::new()).unwrap();
        eprintln!("size {size}: {:?} {:?}", t.elapsed(), problems.iter().map(|p| p.kind).collect::<Vec<_>>());
    }
}
