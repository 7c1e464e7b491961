//! The credentials file (`SETUP_CREDENTIALS_FILE`): the App id, private key and webhook
//! secret GitHub handed over, as environment lines, mode 0600, written atomically, never
//! over an existing file. Nothing of it is logged or shown.

use crate::github::app_info::NewApp;
use anyhow::{Context, Result, bail};
use secrecy::ExposeSecret;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Checked before setup starts, so GitHub's one-time answer always has a place to go: the
/// file must not exist (it would hold an earlier App's credentials) and its directory must
/// take a new file.
pub fn check_target(path: &Path) -> Result<()> {
    if path.exists() {
        bail!(
            "SETUP_CREDENTIALS_FILE {} already exists: it holds the credentials of an App \
             registered earlier. Set GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and WEBHOOK_SECRET \
             from it and restart, or move it away to register another App",
            path.display()
        );
    }
    let probe = temp_path(path);
    create_private(&probe).with_context(|| {
        format!(
            "SETUP_CREDENTIALS_FILE: cannot create files in {}",
            dir(path).display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Writes the credentials: a 0600 file beside the target, synced, then renamed into place.
pub fn write(path: &Path, app: &NewApp) -> Result<()> {
    if path.exists() {
        bail!("{} appeared meanwhile; not overwritten", path.display());
    }
    let tmp = temp_path(path);
    let written = create_private(&tmp).and_then(|mut f| {
        f.write_all(env_text(app).as_bytes())?;
        f.sync_all()
    });
    let placed = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    // The rename itself is durable once the directory is.
    if let Ok(d) = std::fs::File::open(dir(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir(path).join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()))
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

/// One line of text from GitHub, safe inside a comment line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Environment lines, one literal value each (no quotes, as `docker run --env-file`,
/// compose's `env_file` and `kubectl create secret generic --from-env-file` read them). The
/// key is the PEM on one line with `\n` for its line breaks, which autorevert reads back.
fn env_text(app: &NewApp) -> String {
    let pem = app.pem.expose_secret().trim().replace("\r\n", "\n");
    let mut out = format!(
        "# GitHub App \"{name}\" (id {id}, owner {owner}): {url}\n\
         # Registered through autorevert's /setup on {now}. Keep this file secret.\n\
         # Environment for `autorevert serve`, one literal value per line (docker run --env-file,\n\
         # compose env_file, kubectl create secret generic --from-env-file). The private key is\n\
         # the PEM on one line, \\n for each line break; autorevert reads it so.\n\
         GITHUB_APP_ID={id}\n\
         GITHUB_APP_PRIVATE_KEY={key}\\n\n",
        name = one_line(&app.name),
        id = app.id,
        owner = one_line(app.owner.as_deref().unwrap_or("?")),
        url = one_line(&app.html_url),
        now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        key = pem.replace('\n', "\\n"),
    );
    match &app.webhook_secret {
        Some(s) => out.push_str(&format!("WEBHOOK_SECRET={}\n", s.expose_secret().trim())),
        None => out.push_str(
            "# GitHub generated no webhook secret: set one in the App's settings and here.\n\
             WEBHOOK_SECRET=\n",
        ),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn app() -> NewApp {
        NewApp {
            id: 77,
            slug: Some("x".into()),
            name: "x\nGITHUB_APP_ID=1".into(),
            html_url: "https://github.com/apps/x".into(),
            owner: Some("pytorch".into()),
            pem: SecretString::from(
                "-----BEGIN RSA PRIVATE KEY-----\nAAA\nBBB\n-----END RSA PRIVATE KEY-----\n"
                    .to_string(),
            ),
            webhook_secret: Some(SecretString::from("s3cr3t".to_string())),
        }
    }

    #[test]
    fn written_once_private_and_as_environment_lines() {
        let dir = std::env::temp_dir().join(format!("ar-cred-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.env");
        check_target(&path).unwrap();
        write(&path, &app()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "GITHUB_APP_ID=77",
                "GITHUB_APP_PRIVATE_KEY=-----BEGIN RSA PRIVATE KEY-----\\nAAA\\nBBB\\n-----END RSA PRIVATE KEY-----\\n",
                "WEBHOOK_SECRET=s3cr3t",
            ]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(check_target(&path).is_err(), "an existing file is refused");
        assert!(write(&path, &app()).is_err(), "and never overwritten");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
