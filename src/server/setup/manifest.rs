//! The App's manifest (`app-manifest.yml`, built into the binary) as the setup page posts it
//! to GitHub: JSON, with this server's public address filled in.

use serde_json::{Map, Value, json};
use url::Url;
use yaml_rust2::{Yaml, YamlLoader};

/// The manifest as kept in the repository (with placeholder URLs).
pub const MANIFEST_YAML: &str = include_str!("../../../app-manifest.yml");

/// The manifest with `public` (PUBLIC_URL) as homepage, `{public}/webhook` as webhook URL
/// and `{public}/setup/callback` as the address GitHub sends the browser back to.
pub fn manifest(public: &Url) -> Value {
    let base = public.as_str().trim_end_matches('/');
    let docs = YamlLoader::load_from_str(MANIFEST_YAML).expect("app-manifest.yml is YAML");
    let mut m = docs.first().map(to_json).unwrap_or_else(|| json!({}));
    m["url"] = json!(base);
    m["hook_attributes"]["url"] = json!(format!("{base}/webhook"));
    m["redirect_url"] = json!(format!("{base}/setup/callback"));
    m
}

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Hash(h) => {
            let mut out = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    other => to_json(other).to_string(),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::String(s) => json!(s),
        Yaml::Integer(i) => json!(i),
        Yaml::Real(r) => r.parse::<f64>().map_or_else(|_| json!(r), |f| json!(f)),
        Yaml::Boolean(b) => json!(b),
        _ => Value::Null,
    }
}

/// GitHub's web address for the REST API at `api`: `api.github.com` → `github.com` (and
/// `api.X.ghe.com` → `X.ghe.com`), GitHub Enterprise Server's `…/api/v3` → its host; any
/// other address is taken as both (a test server, a proxy).
pub fn web_url(api: &Url) -> String {
    let mut web = api.clone();
    if let Some(host) = api.host_str().and_then(|h| h.strip_prefix("api."))
        && web.set_host(Some(host)).is_ok()
    {
        web.set_path("");
    } else if api.path().trim_end_matches('/').ends_with("/api/v3") {
        web.set_path("");
    }
    web.as_str().trim_end_matches('/').to_string()
}

/// Where the manifest form posts: the new-App page of the personal account, or of the
/// organization `org`, with the CSRF `state`.
pub fn new_app_url(web: &str, org: Option<&str>, state: &str) -> String {
    match org {
        Some(org) => format!("{web}/organizations/{org}/settings/apps/new?state={state}"),
        None => format!("{web}/settings/apps/new?state={state}"),
    }
}

/// An organization login as GitHub allows it: letters, digits and single hyphens inside,
/// at most 39 characters. Anything else never reaches a URL.
pub fn is_org_name(s: &str) -> bool {
    (1..=39).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_gets_this_servers_addresses_and_keeps_the_rest() {
        let m = manifest(&Url::parse("https://ci.example.org/autorevert/").unwrap());
        assert_eq!(m["url"], "https://ci.example.org/autorevert");
        assert_eq!(
            m["hook_attributes"]["url"],
            "https://ci.example.org/autorevert/webhook"
        );
        assert_eq!(m["hook_attributes"]["active"], true);
        assert_eq!(
            m["redirect_url"],
            "https://ci.example.org/autorevert/setup/callback"
        );
        assert_eq!(m["public"], false);
        assert_eq!(m["default_permissions"]["actions"], "write");
        assert_eq!(m["default_permissions"]["issues"], "write");
        assert_eq!(m["default_permissions"]["pull_requests"], "write");
        assert_eq!(m["default_permissions"]["checks"], "write");
        assert_eq!(
            m["default_events"],
            json!(["workflow_run", "workflow_job", "push"])
        );
        assert!(m["description"].as_str().unwrap().starts_with("Restarts"));
    }

    #[test]
    fn githubs_web_address_follows_the_api_address() {
        let web = |u: &str| web_url(&Url::parse(u).unwrap());
        assert_eq!(web("https://api.github.com"), "https://github.com");
        assert_eq!(web("https://api.octo.ghe.com/"), "https://octo.ghe.com");
        assert_eq!(web("https://ghes.corp/api/v3"), "https://ghes.corp");
        assert_eq!(web("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(
            new_app_url("https://github.com", Some("pytorch"), "s1"),
            "https://github.com/organizations/pytorch/settings/apps/new?state=s1"
        );
    }

    #[test]
    fn organization_names_are_checked() {
        assert!(is_org_name("pytorch") && is_org_name("meta-pytorch"));
        for bad in ["", "-x", "x-", "a/b", "../x", "a b", &"x".repeat(40)] {
            assert!(!is_org_name(bad), "{bad}");
        }
    }
}
