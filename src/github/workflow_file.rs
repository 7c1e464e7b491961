//! Reading a workflow file: does it accept `workflow_dispatch`, and with which inputs?
//! (PyTorch's `WorkflowResolver` does the same before adding `jobs-to-include`.)

use yaml_rust2::{Yaml, YamlLoader};

/// `None`: the file has no `workflow_dispatch` trigger (a dispatch would get a 422).
/// `Some(inputs)`: the input names it declares, in file order.
pub fn dispatch_inputs(text: &str) -> Option<Vec<String>> {
    let docs = YamlLoader::load_from_str(text).ok()?;
    let doc = docs.first()?;
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
            dispatch_inputs(y),
            Some(vec![
                "jobs-to-include".to_string(),
                "tests-to-include".to_string()
            ])
        );
    }

    #[test]
    fn other_shapes() {
        assert_eq!(dispatch_inputs("on: workflow_dispatch\n"), Some(vec![]));
        assert_eq!(
            dispatch_inputs("on: [push, workflow_dispatch]\n"),
            Some(vec![])
        );
        assert_eq!(dispatch_inputs("on:\n  workflow_dispatch:\n"), Some(vec![]));
        assert_eq!(dispatch_inputs("on: [push]\n"), None);
        assert_eq!(dispatch_inputs("::: not yaml"), None);
    }
}
