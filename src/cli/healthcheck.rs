//! `autorevert healthcheck`: the container's `HEALTHCHECK` (the image has no curl). GETs
//! `/healthz` of the App on `LISTEN_ADDR` (an unspecified address, 0.0.0.0 or [::], is asked
//! on loopback) and exits 0 on a 2xx, 1 otherwise.

use anyhow::{Result, anyhow};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

/// Where the App on `listen` answers from this machine.
fn local_url(listen: &str) -> Result<String> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| anyhow!("LISTEN_ADDR {listen:?} is not an address like 127.0.0.1:8080"))?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!(
        "http://{}/healthz",
        SocketAddr::new(ip, addr.port())
    ))
}

pub async fn run(listen: String, timeout: Duration) -> Result<ExitCode> {
    let url = local_url(&listen)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()?;
    Ok(match client.get(&url).send().await {
        Ok(resp) if resp.status().is_success() => {
            println!("healthy: {url} answered {}", resp.status());
            ExitCode::SUCCESS
        }
        Ok(resp) => {
            eprintln!("unhealthy: {url} answered {}", resp.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            ExitCode::FAILURE
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_is_asked_on_loopback() {
        assert_eq!(
            local_url("0.0.0.0:8080").unwrap(),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(local_url("[::]:9000").unwrap(), "http://[::1]:9000/healthz");
        assert_eq!(
            local_url("10.1.2.3:80").unwrap(),
            "http://10.1.2.3:80/healthz"
        );
        assert!(local_url("localhost").is_err());
    }
}
