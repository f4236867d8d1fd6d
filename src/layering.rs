//! The module structure as a test: the crate's top-level modules never import each other in
//! a circle (the core is layered), nor do sibling modules of one folder; the core never names
//! the binding, and the supervisor takes nothing from `rpc` (both take their shared words
//! from `vocabulary`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The folder's modules (files other than `mod.rs`) and the siblings each one names as
/// `super::name`.
fn sibling_imports(folder: &str) -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(SRC).join(folder);
    let modules: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rs").map(str::to_owned))
        .filter(|name| name != "mod")
        .collect();
    modules
        .iter()
        .map(|module| {
            let text = std::fs::read_to_string(dir.join(format!("{module}.rs"))).unwrap();
            let named = modules
                .iter()
                .filter(|other| *other != module)
                .filter(|other| {
                    [format!("super::{other}::"), format!("super::{other};"), format!("super::{{{other}")]
                        .iter()
                        .any(|pattern| text.contains(pattern.as_str()))
                        || text.contains(&format!("super::{{")) && braced_super_names(&text).contains(*other)
                })
                .cloned()
                .collect();
            (module.clone(), named)
        })
        .collect()
}

/// Names inside `super::{ ... }` groups.
fn braced_super_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for group in text.split("super::{").skip(1) {
        let inside = group.split('}').next().unwrap_or("");
        for item in inside.split(',') {
            let name = item.trim().split("::").next().unwrap_or("").trim();
            names.insert(name.to_owned());
        }
    }
    names
}

/// A circle of imports among `graph`'s modules, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_circles_among_sibling_modules() {
    for folder in ["js", "rpc", "durable", "durable/fs", "durable/log", "supervisor", "sampling", "policy", "recovery"]
    {
        let graph = sibling_imports(folder);
        assert!(graph.len() >= 2, "{folder}: {graph:?}");
        if let Some(circle) = find_circle(&graph) {
            panic!("src/{folder}: import circle {}", circle.join(" -> "));
        }
    }
}

/// The crate's top-level modules (`src/x.rs` or `src/x/`, the binding and this test left
/// out) and the others each one names as `crate::other` outside its unit tests.
fn top_level_imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(SRC);
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            if e.path().is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").map(str::to_owned)
            }
        })
        .filter(|name| !["lib", "js", "layering"].contains(&name.as_str()))
        .collect();
    modules
        .iter()
        .map(|module| {
            let folder = src.join(module);
            let files = if folder.is_dir() { files_under(&folder) } else { vec![src.join(format!("{module}.rs"))] };
            let named = files
                .iter()
                .flat_map(|file| {
                    let text = std::fs::read_to_string(file).unwrap();
                    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("").to_owned();
                    modules
                        .iter()
                        .filter(|other| *other != module && code.contains(&format!("crate::{other}")))
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .collect();
            (module.clone(), named)
        })
        .collect()
}

#[test]
fn no_import_circles_among_the_top_level_modules() {
    let graph = top_level_imports();
    assert!(graph.len() > 8 && graph["supervisor"].contains("sampling"), "{graph:?}");
    if let Some(circle) = find_circle(&graph) {
        panic!("import circle among the crate's modules: {}", circle.join(" -> "));
    }
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec![])]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(find_circle(&graph).unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(braced_super_names("use super::{mcp, params::x, Y};"), ["Y", "mcp", "params"].map(str::to_owned).into());
}

/// Every `.rs` file under `src/{folder}`, recursively.
fn files_under(folder: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_supervisor_takes_nothing_from_rpc_and_the_core_nothing_from_the_binding() {
    for file in files_under(&Path::new(SRC).join("supervisor")) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("crate::rpc"), "{} imports rpc", file.display());
    }
    for file in files_under(Path::new(SRC))
        .into_iter()
        .filter(|f| !f.starts_with(Path::new(SRC).join("js")) && !f.ends_with("layering.rs"))
    {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("crate::js::") && !text.contains("napi_derive"), "{} names the binding", file.display());
    }
}

/// Every `unsafe` block of the binding says why it is sound, on the lines just above it
/// (`// SAFETY: …`, or `as above` for a run of like calls).
#[test]
fn every_unsafe_block_in_the_binding_has_a_safety_comment() {
    let mut missing = Vec::new();
    for file in files_under(&Path::new(SRC).join("js")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !code.contains("unsafe {") {
                continue;
            }
            // The comment may sit above the statement the block is part of (up to 3 lines up).
            let above = &lines[i.saturating_sub(3)..i];
            if !above.iter().any(|l| l.contains("// SAFETY:")) {
                missing.push(format!("{}:{}", file.display(), i + 1));
            }
        }
    }
    assert!(missing.is_empty(), "unsafe blocks without a SAFETY comment:\n{}", missing.join("\n"));
}
