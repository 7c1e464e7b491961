//! Checks of single values: URLs (shown without credentials) and SQL identifiers.

use anyhow::{Result, bail};
use url::Url;

pub(super) fn parse_http_url(var: &str, raw: &str) -> Result<Url> {
    let shown = without_credentials(raw);
    let url =
        Url::parse(raw.trim()).map_err(|e| anyhow::anyhow!("{var} {shown:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        bail!("{var} {shown:?} must be an http:// or https:// URL with a host");
    }
    Ok(url)
}

/// A URL as it may be shown in an error: any `user:password@` replaced, even when the rest
/// does not parse.
fn without_credentials(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => raw.to_string(),
    }
}

/// Table and database names go into SQL text, so only plain identifiers are accepted.
pub(super) fn check_identifier(var: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.split('.').count() <= 2
        && name
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !ok {
        bail!("{var} {name:?} is not a table name like db.table (letters, digits, _)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_shown_without_its_password() {
        let e = parse_http_url("CLICKHOUSE_URL", "http://me:s3cret@:bad port/x").unwrap_err();
        let text = format!("{e:#}");
        assert!(!text.contains("s3cret") && text.contains("***@"), "{text}");
        let e = parse_http_url("CLICKHOUSE_URL", "ftp://me:s3cret@host").unwrap_err();
        assert!(!format!("{e:#}").contains("s3cret"));
        assert_eq!(without_credentials("http://h:1/a@b"), "http://h:1/a@b");
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(check_identifier("X", "default.workflow_job").is_ok());
        assert!(check_identifier("X", "a.b.c").is_err());
        assert!(check_identifier("X", "t; DROP").is_err());
    }
}
