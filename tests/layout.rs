//! The layout shows the architecture, and stays that way: imports only run downward through
//! the layers (no import circles), and no source file grows into a room of its own.

use std::path::{Path, PathBuf};

/// Top-level modules, top to bottom. A module may use the ones below it, never above.
const LAYERS: [&str; 13] = [
    "cli",
    "config",
    "simulator",
    "server",
    "background",
    "pipeline",
    "store",
    "decisions",
    "signals",
    "reverts",
    "restart",
    "github",
    "intake",
];

/// Longest source file, tests aside.
const MAX_LINES: usize = 500;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code before its tests (`#[cfg(test)]` at the top level), and its top module.
fn code_of(path: &Path) -> (String, Option<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = path.strip_prefix(&src).unwrap();
    let top = rel
        .components()
        .next()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .filter(|t| t != "lib" && t != "main");
    let text = std::fs::read_to_string(path).unwrap();
    let code = match text.find("\n#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    (code, top)
}

fn all_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20, "found {} source files", files.len());
    files
}

#[test]
fn imports_only_run_downward() {
    let mut upward = Vec::new();
    for path in all_sources() {
        let (code, Some(top)) = code_of(&path) else {
            continue;
        };
        let me = LAYERS
            .iter()
            .position(|l| *l == top)
            .unwrap_or_else(|| panic!("{top} (in {}) is in no layer", path.display()));
        for (n, line) in code.lines().enumerate() {
            for (i, _) in line.match_indices("crate::") {
                let used: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let Some(there) = LAYERS.iter().position(|l| *l == used) else {
                    continue;
                };
                if there < me {
                    upward.push(format!("{}:{}: {top} uses {used}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run upward:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_source_file_is_longer_than_it_should_be() {
    let mut long = Vec::new();
    for path in all_sources() {
        let (code, _) = code_of(&path);
        let lines = code.lines().count();
        if lines > MAX_LINES {
            long.push(format!("{}: {lines} lines", path.display()));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}
