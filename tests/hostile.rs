//! The port under attack, through the real `serve` binary and raw TCP clients on 127.0.0.1:
//! connections that stop half-way through their headers (more of them than the App has
//! descriptors), a body that stops, SIGTERM with such clients connected, a declared body over
//! GitHub's cap. Every load here is bounded in count and time.

mod common;

use common::binary::Binary;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const STUCK: usize = 1500;

/// A running App and what it needs kept alive.
struct Running {
    bin: Binary,
    child: std::process::Child,
    _store: autorevert::store::Store,
    _github: fake_github::FakeGitHub,
}

impl Running {
    async fn start(env: &[(&str, &str)], nofile: Option<(u64, u64)>) -> Running {
        // The clients below need descriptors of their own (STUCK of them per test).
        autorevert::server::descriptors::raise_limit();
        let store = fresh_store().await;
        let github = fake_github::FakeGitHub::start(INSTALLATION, &[REPO]).await;
        let mut bin = Binary::new(&store, &github);
        bin.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        bin.nofile = nofile;
        let child = bin.start();
        bin.wait_up().await;
        Running {
            bin,
            child,
            _store: store,
            _github: github,
        }
    }

    fn addr(&self) -> String {
        self.bin.url().trim_start_matches("http://").to_string()
    }

    /// The App's soft and hard descriptor limits, as the kernel has them.
    fn nofile(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let n: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (n[0], n[1])
    }

    fn terminate(&self) {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit, at most `within`; how long it took.
    fn wait_exit(&mut self, within: Duration) -> Option<(Duration, std::process::ExitStatus)> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((start.elapsed(), status));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection that sent half a request head and waits: when it connected, and when the
/// server closed it (EOF or reset).
async fn stuck_in_headers(addr: &str) -> JoinHandle<(Instant, Instant)> {
    let opened = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: work")
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        (opened, Instant::now())
    })
}

/// Reads until the server closes; what it sent and when it closed (from `since`).
async fn read_to_close(s: &mut TcpStream, since: Instant) -> (String, Duration) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    (String::from_utf8_lossy(&got).into_owned(), since.elapsed())
}

/// `GET /healthz` on a fresh connection: its status and latency.
async fn healthz(app: &Running) -> (u16, Duration) {
    let start = Instant::now();
    let resp = http_client()
        .get(format!("{}/healthz", app.bin.url()))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), start.elapsed())
}

/// 1,500 connections stuck in their headers against an App with 1,024 descriptors:
/// `/healthz` and a signed delivery are still answered quickly, and the server closes
/// every stuck connection.
async fn stuck_headers_do_not_shut_out_github(nofile: (u64, u64), over_the_cap: bool) {
    let header_timeout = Duration::from_secs(4);
    let mut app = Running::start(
        &[("HEADER_TIMEOUT_SECS", "4"), ("RESTART_ACTION", "log")],
        Some(nofile),
    )
    .await;
    assert_eq!(
        app.nofile(),
        (nofile.1, nofile.1),
        "the soft limit is raised to the hard one"
    );
    let addr = app.addr();
    let opening = Instant::now();
    let mut stuck = Vec::with_capacity(STUCK);
    for _ in 0..STUCK {
        stuck.push(stuck_in_headers(&addr).await);
    }
    let opened_in = opening.elapsed();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let (status, took) = healthz(&app).await;
        assert_eq!(status, 200);
        slowest = slowest.max(took);
    }
    let start = Instant::now();
    let status = app
        .bin
        .deliver("under-attack", failure(&sha(1), 4242))
        .await;
    let delivered_in = start.elapsed();
    assert_eq!(status, 202);
    let closed_meanwhile = stuck.iter().filter(|h| h.is_finished()).count();
    let probed_at = opening.elapsed();
    assert!(
        slowest < Duration::from_secs(2) && delivered_in < Duration::from_secs(2),
        "healthz took up to {slowest:?}, the delivery {delivered_in:?}"
    );
    let mut closed_after = Vec::with_capacity(STUCK);
    for h in stuck {
        let (opened, closed) = tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("a stuck connection was not closed within a minute")
            .unwrap();
        closed_after.push(closed - opened);
    }
    closed_after.sort();
    let last = *closed_after.last().unwrap();
    eprintln!(
        "nofile {nofile:?}: {STUCK} stuck connections opened in {opened_in:?}; \
         healthz answered within {slowest:?} and a signed delivery in {delivered_in:?} \
         {probed_at:?} after the first, while {} of them were open; closed by the server \
         after {:?} (first) to {last:?} (last)",
        STUCK - closed_meanwhile,
        closed_after[0],
    );
    assert!(
        STUCK - closed_meanwhile >= 500,
        "the probes must run while the stuck connections are there ({closed_meanwhile} closed)"
    );
    assert!(last < header_timeout + Duration::from_secs(10), "{last:?}");
    if over_the_cap {
        // Some were closed at once, to make room for newer ones.
        assert!(closed_after[0] < header_timeout, "{:?}", closed_after[0]);
    } else {
        // All of them by the header timeout.
        assert!(closed_after[0] >= header_timeout, "{:?}", closed_after[0]);
    }
    // And the App is still whole.
    assert_eq!(healthz(&app).await.0, 200);
    app.terminate();
    let (took, exit) = app.wait_exit(Duration::from_secs(20)).expect("exit");
    assert!(exit.success(), "{exit:?} after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_headers_with_the_soft_limit_raised() {
    stuck_headers_do_not_shut_out_github((1024, 4096), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_headers_beyond_the_connection_cap() {
    // No raise possible: the cap (896 here) and closing the longest waiting connection for
    // room are what keep the port open.
    stuck_headers_do_not_shut_out_github((1024, 1024), true).await;
}

/// The head of a signed-looking POST that declares `length` bytes of body.
fn post_head(length: usize) -> Vec<u8> {
    format!(
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: workflow_run\r\n\
         X-GitHub-Delivery: d-hostile\r\nX-Hub-Signature-256: sha256=00\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_is_dropped_at_the_body_timeout() {
    let app = Running::start(&[("BODY_TIMEOUT_SECS", "2")], None).await;
    let mut s = TcpStream::connect(app.addr()).await.unwrap();
    s.write_all(&post_head(1 << 20)).await.unwrap();
    s.write_all(&[b' '; 1024]).await.unwrap();
    let sent = Instant::now();
    let (answer, closed) =
        tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut s, sent))
            .await
            .expect("the connection was not closed within 10 s");
    eprintln!("a body stopped after 1 KiB of 1 MiB: closed after {closed:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive"), "{answer}");
    assert!(
        closed >= Duration::from_millis(1900) && closed < Duration::from_secs(4),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_whatever_clients_do() {
    let grace = Duration::from_secs(6);
    // Timeouts far longer than the grace: only the shutdown can end these clients.
    let mut app = Running::start(
        &[
            ("SHUTDOWN_GRACE_SECS", "6"),
            ("HEADER_TIMEOUT_SECS", "120"),
            ("BODY_TIMEOUT_SECS", "120"),
        ],
        None,
    )
    .await;
    let mut body_stopped = TcpStream::connect(app.addr()).await.unwrap();
    body_stopped.write_all(&post_head(1 << 20)).await.unwrap();
    body_stopped.write_all(&[b' '; 1024]).await.unwrap();
    let mut in_headers = Vec::new();
    for _ in 0..20 {
        in_headers.push(stuck_in_headers(&app.addr()).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    app.terminate();
    let waited = tokio::task::spawn_blocking(move || {
        let exit = app.wait_exit(Duration::from_secs(30));
        (app, exit)
    });
    let (_, body_closed) = tokio::time::timeout(
        Duration::from_secs(30),
        read_to_close(&mut body_stopped, signalled),
    )
    .await
    .expect("the stopped body's connection stayed open");
    let mut headers_closed = Duration::ZERO;
    for h in in_headers {
        let (_, closed) = h.await.unwrap();
        headers_closed = headers_closed.max(closed - signalled);
    }
    let (_app, exit) = waited.await.unwrap();
    let (took, status) = exit.expect("the App did not exit within 30 s of SIGTERM");
    eprintln!(
        "SIGTERM: connections stuck in headers closed within {headers_closed:?}, the stopped \
         body's after {body_closed:?}; exit after {took:?} (grace {grace:?})"
    );
    assert!(status.success(), "{status:?}");
    assert!(took < grace, "exit took {took:?}, grace {grace:?}");
    assert!(
        headers_closed < Duration::from_secs(1),
        "{headers_closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_25_mib_is_refused_before_it_is_sent() {
    let app = Running::start(&[], None).await;
    let mut s = TcpStream::connect(app.addr()).await.unwrap();
    let sent = Instant::now();
    s.write_all(&post_head(25 * 1024 * 1024 + 1)).await.unwrap();
    let (answer, took) = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut s, sent))
        .await
        .expect("no answer within 5 s");
    eprintln!("Content-Length over 25 MiB: answered and closed after {took:?}");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than"), "{answer}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Reads one answer off a kept-alive connection: its status line.
async fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed mid-answer");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).await.unwrap();
    head.lines().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_connection_waits_the_keep_alive_timeout_for_its_next_request() {
    let app = Running::start(&[("KEEPALIVE_TIMEOUT_SECS", "1")], None).await;
    let mut s = TcpStream::connect(app.addr()).await.unwrap();
    let mut answered = Instant::now();
    for _ in 0..2 {
        // The second request comes half-way through the keep-alive timeout: still served.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_answer(&mut s).await, "HTTP/1.1 200 OK");
        answered = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (rest, closed) = read_to_close(&mut s, answered).await;
    eprintln!("keep-alive 1 s: the idle connection closed {closed:?} after its last answer");
    assert_eq!(rest, "");
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(3),
        "{closed:?}"
    );
}
