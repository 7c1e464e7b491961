//! The setup pages: a few lines of HTML each, every value escaped.

use crate::github::app_info::{NEEDED_EVENTS, NEEDED_PERMISSIONS};

/// Text for HTML content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around `body` (already HTML). The referrer is never sent: the page's own
/// address holds the setup token.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;padding:0 1em;\
         line-height:1.4}}code,pre{{background:#f3f3f3}}</style></head>\n<body>\n\
         <h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title)
    )
}

/// What the register page shows.
pub struct Register<'a> {
    pub token: &'a str,
    pub org: Option<&'a str>,
    /// The manifest form's target (GitHub's new-App page, with the state).
    pub action: &'a str,
    pub manifest: &'a serde_json::Value,
    pub credentials_file: &'a str,
}

pub fn register(r: &Register) -> String {
    let owner = match r.org {
        Some(o) => format!("the organization <strong>{}</strong>", escape(o)),
        None => "your personal account".to_string(),
    };
    let permissions: Vec<String> = NEEDED_PERMISSIONS
        .iter()
        .map(|(p, l)| format!("<code>{p}: {l}</code>"))
        .collect();
    let body = format!(
        "<p>GitHub will register a GitHub App from this server's manifest, owned by {owner}, \
         with its webhook at <code>{hook}</code>. You may rename it on GitHub's page.</p>\n\
         <p>Permissions: {perms}. Events: <code>{events}</code>.</p>\n\
         <form method=\"get\" action=\"setup\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <label>Owner: organization <input name=\"org\" value=\"{org}\" maxlength=\"39\" \
         placeholder=\"empty: your account\"></label> <button type=\"submit\">Change owner</button>\
         </form>\n\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\
         <p><button type=\"submit\">Register GitHub App</button></p></form>\n\
         <p>GitHub then sends you back here. The App id, its private key and its webhook \
         secret are written to <code>{file}</code> (mode 0600); they are neither shown nor \
         logged.</p>\n<details><summary>The manifest</summary><pre>{pretty}</pre></details>",
        hook = escape(r.manifest["hook_attributes"]["url"].as_str().unwrap_or("")),
        perms = permissions.join(", "),
        events = NEEDED_EVENTS.join(", "),
        token = escape(r.token),
        org = escape(r.org.unwrap_or("")),
        action = escape(r.action),
        manifest = escape(&r.manifest.to_string()),
        file = escape(r.credentials_file),
        pretty = escape(&serde_json::to_string_pretty(r.manifest).unwrap_or_default()),
    );
    page("Register the autorevert GitHub App", &body)
}

/// What the done page shows (no secret among it).
pub struct Done<'a> {
    pub id: u64,
    pub name: &'a str,
    pub html_url: &'a str,
    pub credentials_file: &'a str,
}

pub fn done(d: &Done) -> String {
    let install = format!("{}/installations/new", d.html_url.trim_end_matches('/'));
    let body = format!(
        "<p>GitHub registered the App <a href=\"{url}\">{name}</a>, App id <code>{id}</code>. \
         Its id, private key and webhook secret are in <code>{file}</code> (mode 0600); they \
         are not shown here and were not logged. The setup pages are closed now.</p>\n\
         <h2>Next</h2>\n<ol>\n\
         <li>Install the App on the repositories it acts on (<code>AUTOREVERT_REPOS</code>, \
         pytorch/pytorch by default): <a href=\"{install}\">{install}</a></li>\n\
         <li>Give autorevert the variables from the file: <code>GITHUB_APP_ID</code>, \
         <code>GITHUB_APP_PRIVATE_KEY</code>, <code>WEBHOOK_SECRET</code> (e.g. \
         <code>docker run --env-file {file}</code>, or your secret store), and its ClickHouse \
         (<code>CLICKHOUSE_URL</code> or <code>CLICKHOUSE_HOST</code>).</li>\n\
         <li>Restart autorevert: it serves <code>POST /webhook</code>, and these pages are gone.</li>\n\
         <li>Check the whole configuration: <code>autorevert doctor</code>.</li>\n</ol>",
        url = escape(d.html_url),
        name = escape(d.name),
        id = d.id,
        file = escape(d.credentials_file),
        install = escape(&install),
    );
    page("The GitHub App is registered", &body)
}

/// A page that says one thing (refusals, errors).
pub fn message(title: &str, text: &str) -> String {
    page(title, &format!("<p>{}</p>", escape(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_everywhere() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let manifest = serde_json::json!({"name": "a\"><script>", "hook_attributes": {"url": "u"}});
        let html = register(&Register {
            token: "t\"",
            org: Some("<o>"),
            action: "https://github.com/settings/apps/new?state=s&x=1",
            manifest: &manifest,
            credentials_file: "/x/<f>",
        });
        assert!(!html.contains("<script>") && !html.contains("<o>") && !html.contains("<f>"));
        assert!(html.contains("value=\"t&quot;\""));
        assert!(html.contains("state=s&amp;x=1"));
        assert!(html.contains("&quot;name&quot;:&quot;a\\&quot;&gt;&lt;script&gt;&quot;"));
    }
}
