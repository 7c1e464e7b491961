//! The Docker build has no CI of its own here (no Docker daemon on the test machines), so
//! what it needs from the repository is checked statically: cargo parses every target the
//! manifest declares before it builds one, so each must be in the build context.

fn read(rel: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + rel)
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// What the Dockerfile's build stage (its first `FROM`) copies in from the context.
fn copied_dirs(dockerfile: &str) -> Vec<String> {
    let mut stage = 0;
    let mut out = Vec::new();
    for line in dockerfile.lines() {
        if line.starts_with("FROM ") {
            stage += 1;
        }
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if stage != 1 || args.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = args.split_whitespace().collect();
        let sources = &parts[..parts.len().saturating_sub(1)];
        out.extend(sources.iter().map(|p| p.trim_end_matches('/').to_string()));
    }
    out
}

#[test]
fn the_docker_build_context_holds_every_target_the_manifest_declares() {
    let manifest = read("Cargo.toml");
    let copied = copied_dirs(&read("Dockerfile"));
    for needed in ["Cargo.toml", "Cargo.lock", "src"] {
        assert!(
            copied.iter().any(|c| c == needed),
            "Dockerfile does not COPY {needed}: {copied:?}"
        );
    }
    for (section, dir) in [
        ("[[bench]]", "benches"),
        ("[[example]]", "examples"),
        ("[[test]]", "tests"),
    ] {
        if manifest.contains(section) {
            assert!(
                copied.iter().any(|c| c == dir),
                "Cargo.toml declares {section} targets, so the Dockerfile must COPY {dir} (cargo reads them all before building the binary): {copied:?}"
            );
        }
    }
    // Each declared bench's file is where cargo looks for it.
    for block in manifest.split("[[bench]]").skip(1) {
        let name = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = "))
            .map(|n| n.trim_matches('"'))
            .expect("a [[bench]] has a name");
        let path = format!("{}/benches/{name}.rs", env!("CARGO_MANIFEST_DIR"));
        assert!(std::path::Path::new(&path).exists(), "{path} is missing");
    }
}

/// The manifest GitHub registers the App from asks for exactly what `doctor` checks every
/// installation grants: the comments and the push order of the decision engine included,
/// nothing more.
#[test]
fn the_app_manifest_asks_for_exactly_what_doctor_checks() {
    use autorevert::github::app_info::{NEEDED_EVENTS, NEEDED_PERMISSIONS};
    let docs = yaml_rust2::YamlLoader::load_from_str(&read("app-manifest.yml")).unwrap();
    let m = &docs[0];
    let mut asked: Vec<(String, String)> = m["default_permissions"]
        .as_hash()
        .expect("default_permissions is a map")
        .iter()
        .map(|(k, v)| {
            let level = v.as_str().unwrap_or_default().to_string();
            (k.as_str().unwrap_or_default().to_string(), level)
        })
        .collect();
    asked.sort();
    let mut checked: Vec<(String, String)> = NEEDED_PERMISSIONS
        .iter()
        .map(|(p, l)| (p.to_string(), l.to_string()))
        .collect();
    checked.sort();
    assert_eq!(asked, checked);
    for needed in [("pull_requests", "write"), ("issues", "write")] {
        let needed = (needed.0.to_string(), needed.1.to_string());
        assert!(asked.contains(&needed), "{needed:?}");
    }
    let events: Vec<&str> = m["default_events"]
        .as_vec()
        .expect("default_events is a list")
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert_eq!(events, NEEDED_EVENTS);
    assert!(events.contains(&"push"));
}
