//! Setup mode: `serve` with no GitHub App credentials and no webhook secret serves GitHub's
//! App-manifest flow (`server::setup`) instead of refusing to start.

use super::{GitHubArgs, ServeArgs, parse_http_url};
use crate::server::setup::SetupConfig;
use anyhow::{Result, bail};
use std::time::Duration;

impl ServeArgs {
    /// `Some` when `serve` starts in setup mode: no `WEBHOOK_SECRET`, no `GITHUB_APP_ID` and
    /// no private key. Setup mode needs `PUBLIC_URL` and `SETUP_CREDENTIALS_FILE`. A
    /// configuration with any of the three starts the App as before (and says what is missing).
    pub fn setup_mode(&self, github: &GitHubArgs) -> Result<Option<SetupConfig>> {
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        let app_credentials = github.github_app_id.is_some()
            || !blank(&github.github_app_private_key)
            || github.github_app_private_key_path.is_some();
        if !blank(&self.webhook_secret) || app_credentials {
            return Ok(None);
        }
        let listen = self.listen()?;
        let Some(public) = self.public_url.as_deref().filter(|u| !u.trim().is_empty()) else {
            bail!(
                "no GitHub App credentials and no WEBHOOK_SECRET: to register the App through \
                 /setup, set PUBLIC_URL (the address GitHub reaches this server at, e.g. \
                 https://autorevert.example.org) and SETUP_CREDENTIALS_FILE; or set \
                 WEBHOOK_SECRET (and GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY) to run the App"
            );
        };
        let public_url = parse_http_url("PUBLIC_URL", public)?;
        if public_url.query().is_some() || public_url.fragment().is_some() {
            bail!("PUBLIC_URL {public:?} must be a plain address, without ?query or #fragment");
        }
        let Some(file) = self.setup_credentials_file.clone() else {
            bail!(
                "setup mode needs SETUP_CREDENTIALS_FILE: where the registered App's id, private \
                 key and webhook secret are written (mode 0600), e.g. \
                 /var/lib/autorevert/github-app.env"
            );
        };
        if github.github_timeout_secs == 0 {
            bail!("GITHUB_TIMEOUT_SECS must be at least 1");
        }
        Ok(Some(SetupConfig {
            listen,
            public_url,
            credentials_file: file,
            api_url: parse_http_url("GITHUB_API_URL", &github.github_api_url)?,
            timeout: Duration::from_secs(github.github_timeout_secs),
        }))
    }
}
