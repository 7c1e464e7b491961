//! Reading a workflow file: does it accept `workflow_dispatch`, and with which inputs?
//! (PyTorch's `WorkflowResolver` does the same before adding `jobs-to-include`.)

use std::collections::HashMap;
use std::sync::Mutex;
use yaml_rust2::parser::{Event, EventReceiver, Parser};
use yaml_rust2::{Yaml, YamlLoader};

/// Workflow files are small (PyTorch's trunk.yml is about 20 KiB); a larger one is refused.
pub const MAX_WORKFLOW_BYTES: usize = 512 * 1024;

/// Finds alias events: a workflow file has no use for them, and expanding them is how a
/// small document becomes a huge one ("billion laughs").
#[derive(Default)]
struct Aliases(usize);

impl EventReceiver for Aliases {
    fn on_event(&mut self, ev: Event) {
        if matches!(ev, Event::Alias(_)) {
            self.0 += 1;
        }
    }
}

/// `Ok(None)`: the file has no `workflow_dispatch` trigger (a dispatch would get a 422).
/// `Ok(Some(inputs))`: the input names it declares, in file order. `Err`: not a workflow
/// file this App reads (not YAML, too large, or using aliases).
pub fn dispatch_inputs(text: &str) -> Result<Option<Vec<String>>, String> {
    if text.len() > MAX_WORKFLOW_BYTES {
        return Err(format!(
            "workflow file is {} bytes, more than {MAX_WORKFLOW_BYTES}",
            text.len()
        ));
    }
    let mut aliases = Aliases::default();
    Parser::new_from_str(text)
        .load(&mut aliases, true)
        .map_err(|e| format!("workflow file is not YAML: {e}"))?;
    if aliases.0 > 0 {
        return Err(format!(
            "workflow file uses {} YAML alias(es); refused",
            aliases.0
        ));
    }
    let docs =
        YamlLoader::load_from_str(text).map_err(|e| format!("workflow file is not YAML: {e}"))?;
    Ok(docs.first().and_then(inputs_of))
}

/// A workflow file at a ref, as the contents API gave it, and what it declares.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowFile {
    /// `.github/workflows/<file>`.
    pub path: String,
    /// The git blob: the same for every commit whose file is the same.
    pub blob_sha: String,
    /// `dispatch_inputs` of its text.
    pub inputs: Option<Vec<String>>,
}

/// What `dispatch_inputs` made of one version of a file (an error is kept too).
type Parse = Result<Option<Vec<String>>, String>;

/// Parsed workflow files by (path, blob sha). A blob never changes, so a file is decoded and
/// parsed once however many commits share it (trunk.yml changes a few times a week). At
/// most `MAX_PARSED` versions are kept; the cache starts afresh when full.
#[derive(Default)]
pub struct ParsedFiles {
    parsed: Mutex<HashMap<(String, String), Parse>>,
}

const MAX_PARSED: usize = 256;

impl ParsedFiles {
    /// The inputs of `path` at `blob`: parsed before, or now from `text()`.
    pub fn inputs(
        &self,
        path: &str,
        blob: &str,
        text: impl FnOnce() -> Result<String, String>,
    ) -> Parse {
        let key = (path.to_string(), blob.to_string());
        if let Some(known) = self.lock().get(&key) {
            return known.clone();
        }
        let parsed = text().and_then(|t| dispatch_inputs(&t));
        let mut cache = self.lock();
        if cache.len() >= MAX_PARSED {
            cache.clear();
        }
        cache.insert(key, parsed.clone());
        parsed
    }

    /// Versions held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Parse>> {
        self.parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn inputs_of(doc: &Yaml) -> Option<Vec<String>> {
    // `on:` is the string key in YAML 1.2; YAML 1.1 readers turn it into `true`.
    let on = match (&doc["on"], doc.as_hash()) {
        (Yaml::BadValue, Some(h)) => h.get(&Yaml::Boolean(true)).unwrap_or(&Yaml::BadValue),
        (v, _) => v,
    };
    match on {
        Yaml::String(s) if s == "workflow_dispatch" => Some(vec![]),
        Yaml::Array(items) => items
            .iter()
            .any(|i| i.as_str() == Some("workflow_dispatch"))
            .then(Vec::new),
        Yaml::Hash(h) => {
            let wd = h.get(&Yaml::String("workflow_dispatch".into()))?;
            Some(match &wd["inputs"] {
                Yaml::Hash(inputs) => inputs
                    .keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inputs_of_trunk_like_file() {
        let y = "name: trunk\non:\n  push:\n    branches: [main]\n  workflow_dispatch:\n    inputs:\n      jobs-to-include:\n        type: string\n      tests-to-include:\n        type: string\n";
        assert_eq!(
            dispatch_inputs(y).unwrap(),
            Some(vec![
                "jobs-to-include".to_string(),
                "tests-to-include".to_string()
            ])
        );
    }

    #[test]
    fn other_shapes() {
        let read = |y: &str| dispatch_inputs(y).unwrap();
        assert_eq!(read("on: workflow_dispatch\n"), Some(vec![]));
        assert_eq!(read("on: [push, workflow_dispatch]\n"), Some(vec![]));
        assert_eq!(read("on:\n  workflow_dispatch:\n"), Some(vec![]));
        assert_eq!(read("on: [push]\n"), None);
        assert_eq!(read("::: a scalar, no triggers"), None);
        assert!(dispatch_inputs("on: [unclosed").is_err());
    }

    #[test]
    fn a_blob_is_parsed_once() {
        let cache = ParsedFiles::default();
        let mut reads = 0;
        let mut read = |blob: &str, text: &str| {
            cache.inputs("w.yml", blob, || {
                reads += 1;
                Ok(text.to_string())
            })
        };
        let first = read(
            "b1",
            "on:\n  workflow_dispatch:\n    inputs:\n      jobs-to-include: {}\n",
        );
        assert_eq!(first, Ok(Some(vec!["jobs-to-include".to_string()])));
        // The same blob again: the text is not even looked at.
        assert_eq!(read("b1", "not read"), first);
        assert_eq!(read("b2", "on: [push]\n"), Ok(None));
        assert!(read("b3", "on: [unclosed").is_err());
        assert_eq!(reads, 3);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn aliases_and_huge_files_are_refused() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\non: [*b, *b]\n";
        let e = dispatch_inputs(bomb).unwrap_err();
        assert!(e.contains("alias"), "{e}");
        let huge = format!(
            "on: workflow_dispatch\n# {}\n",
            "x".repeat(MAX_WORKFLOW_BYTES)
        );
        assert!(dispatch_inputs(&huge).unwrap_err().contains("bytes"));
    }
}
