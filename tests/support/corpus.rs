//! The committed corpus `fuzz/corpus/<target>/` and the regressions `fuzz/regressions/<target>/`:
//! each file's name says the verdict it must get (`ok-…` accepted, `bad-…` refused).

use std::fs;
use std::path::{Path, PathBuf};

use super::checks::case;

pub fn repo_dir(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn corpus_dir(target: &str) -> PathBuf {
    repo_dir("fuzz/corpus").join(target)
}

pub fn regressions_dir(target: &str) -> PathBuf {
    repo_dir("fuzz/regressions").join(target)
}

pub fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.') && n != "README.md")
        .collect();
    names.sort();
    names
}

/// Every file in `dir` gets the verdict its name says: `ok-…` accepted, `bad-…` refused
/// (and nothing panics). Returns how many of each.
pub fn replay_named(dir: &Path, verdict: impl Fn(usize, &[u8]) -> bool) -> (usize, usize) {
    let (mut ok, mut bad) = (0, 0);
    for (i, name) in sorted_names(dir).iter().enumerate() {
        let bytes = fs::read(dir.join(name)).unwrap();
        let want = match name.split('-').next() {
            Some("ok") => true,
            Some("bad") => false,
            _ => panic!(
                "{}/{name}: names start with ok- or bad- (a file libFuzzer added? give `cargo fuzz run` a \
                 scratch corpus first, see fuzz/README.md)",
                dir.display()
            ),
        };
        let got = case(name, i, &bytes, || verdict(i, &bytes));
        assert_eq!(got, want, "{}/{name}: {}", dir.display(), if got { "accepted" } else { "refused" });
        *(if want { &mut ok } else { &mut bad }) += 1;
    }
    (ok, bad)
}

pub fn replay_corpus(target: &str, verdict: impl Fn(usize, &[u8]) -> bool) {
    let (ok, bad) = replay_named(&corpus_dir(target), verdict);
    assert!(ok >= 3 && bad >= 10, "{target}: only {ok} ok and {bad} bad corpus files");
}
