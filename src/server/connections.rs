//! The port, as anyone on the internet may use it. Every connection is hyper's HTTP/1
//! connection under these bounds:
//! * a header read timeout (hyper's, on tokio's timer): from the moment a connection waits
//!   for a request (accepted, or its last answer written) until that request's headers are in.
//!   A client that sends half a request is closed at the timeout;
//! * a keep-alive timeout: an answered connection waits this long for its next request;
//! * a body deadline (`routes::BodyTimeout`): the whole body within this time of its headers;
//! * a cap on open connections, below the descriptor limit (`descriptors.rs`).
//!
//! At the cap, the connection that has waited longest for a request's headers is closed to
//! make room for the new one, as nginx reuses its idle connections when it runs out. Such a
//! connection holds no request: nothing the App accepted is lost, and its client, if honest,
//! has nothing in flight (GitHub sends its headers in one packet, within milliseconds, so the
//! longest waiting is the likeliest attacker). Refusing the new connection instead, or leaving
//! it in the kernel's backlog, would let a few thousand half-requests shut out GitHub and
//! `/healthz` until they time out. Connections with a request in flight are never dropped for
//! room: when all are, the next one waits until one ends (the body deadline bounds that).
//!
//! On stop: the listener closes, connections without a request in flight close at once, the
//! others finish their request (hyper stops keep-alive), and whatever is still open when the
//! drain time is up is dropped.

use super::routes::BodyTimeout;
use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// How the App holds its port (see above).
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// How long an answered connection waits for its next request (ZERO: one request per
    /// connection). The header timeout runs meanwhile too, so at most `header_timeout`.
    pub keep_alive: Duration,
    pub max_connections: usize,
    /// From the stop signal to exit, whatever clients do.
    pub grace: Duration,
}

impl Limits {
    /// How long requests in flight may finish after the stop signal: half the grace (the
    /// rest is the queued work's), and never more than 10 s, when GitHub has given up on an
    /// answer anyway.
    pub fn drain(&self) -> Duration {
        (self.grace / 2).min(Duration::from_secs(10))
    }
}

/// Longest request head. GitHub's are 1 to 2 KiB; hyper's default (its ~400 KiB buffer)
/// would let every stuck connection hold that much memory.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `router` on `listener` until `stop` completes, then drains the connections (see
/// above). Returns when the stop signal came.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    stop: impl Future<Output = ()>,
) -> Instant {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(!limits.keep_alive.is_zero());
    let (stopping, stopped) = watch::channel(false);
    let shared = Arc::new(Shared {
        http,
        router,
        limits: limits.clone(),
        open: Registry::default(),
        stop: stopped,
    });
    let room = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    tokio::pin!(stop);
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                accept_failed(&e, &shared.open).await;
                continue;
            }
        };
        let place = tokio::select! {
            p = make_room(&room, &shared.open, limits.max_connections) => p,
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        conns.spawn(connection(shared.clone(), stream, place));
    }
    let stopped_at = Instant::now();
    drop(listener);
    let _ = stopping.send(true);
    drain(conns, limits.drain()).await;
    stopped_at
}

/// A place under the cap: a free one, or one made by closing the connection that has
/// waited longest for a request's headers; when every connection has a request in flight,
/// the first to end.
async fn make_room(room: &Arc<Semaphore>, open: &Registry, cap: usize) -> OwnedSemaphorePermit {
    loop {
        if let Ok(p) = room.clone().try_acquire_owned() {
            return p;
        }
        // A few at a time (1/64 of the cap): the next connections then find room at once,
        // instead of each waiting for its own to close while more queue in the backlog.
        open.close_longest_waiting((cap / 64).max(1));
        // The closed connection gives its place back within moments; should it have begun
        // a request meanwhile (it then stays), look again.
        let wait = tokio::time::timeout(Duration::from_millis(100), room.clone().acquire_owned());
        if let Ok(p) = wait.await {
            return p.expect("the semaphore is never closed");
        }
    }
}

/// Accepting failed. Out of descriptors (only if something else holds them: the cap stays
/// below the limit): close a waiting connection and try again shortly, rather than sleep
/// while clients pile up. Anything else concerns that one connection.
async fn accept_failed(e: &std::io::Error, open: &Registry) {
    use rustix::io::Errno;
    if matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE)) {
        tracing::warn!(error = %e, "out of file descriptors; closing a waiting connection");
        open.close_longest_waiting(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    } else {
        tracing::debug!(error = %e, "accept failed");
    }
}

/// After the stop signal: wait for the connections to end, up to `within`, then drop them.
async fn drain(mut conns: JoinSet<()>, within: Duration) {
    let open = conns.len();
    let all_ended = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(within, all_ended).await.is_err() {
        tracing::warn!(
            open,
            dropped = conns.len(),
            "connections still open when the drain time was up; dropped"
        );
        conns.shutdown().await;
    }
}

/// What every connection's task shares.
struct Shared {
    http: http1::Builder,
    router: Router,
    limits: Limits,
    open: Registry,
    stop: watch::Receiver<bool>,
}

/// One connection's task: hyper serves it until it ends, is closed for room, stays idle past
/// the keep-alive timeout, or the App stops.
async fn connection(shared: Arc<Shared>, stream: TcpStream, _place: OwnedSemaphorePermit) {
    let (conn, _registered) = shared.open.register();
    let service = service(
        conn.clone(),
        shared.router.clone(),
        shared.limits.body_timeout,
    );
    let http = shared.http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    let mut stop = shared.stop.clone();
    let mut stopping = *stop.borrow();
    loop {
        let next = {
            let mut s = conn.state();
            if s.in_flight == 0 && (stopping || s.close) {
                return;
            }
            s.close = false; // asked to close for room, but a request began meanwhile
            s.keep_alive_until(shared.limits.keep_alive)
        };
        if next.is_some_and(|t| t <= Instant::now()) {
            return;
        }
        tokio::select! {
            biased;
            ended = http.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended");
                }
                return;
            }
            () = conn.wake.notified() => {}
            _ = stop.changed(), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
            () = sleep_until(next) => {}
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The router as hyper calls it on one connection: each request counts as in flight from its
/// headers until hyper has taken the last byte of its answer, and carries the body deadline.
fn service(
    conn: Arc<Conn>,
    router: Router,
    body_timeout: Duration,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future: Send,
> {
    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let busy = Busy::start(conn.clone());
        req.extensions_mut().insert(BodyTimeout(body_timeout));
        let answer = router.clone().oneshot(req);
        async move {
            let resp = answer.await?;
            Ok(resp.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_flight = &busy;
                    frame
                }))
            }))
        }
    })
}

/// The open connections, to find the one to close for room.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn register(&self) -> (Arc<Conn>, Registered<'_>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                answered: false,
                close: false,
            }),
            wake: Notify::new(),
        });
        self.conns().insert(id, conn.clone());
        (conn, Registered { open: self, id })
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().expect("connections lock")
    }

    /// Asks the `n` connections that have waited longest for a request's headers to close.
    fn close_longest_waiting(&self, n: usize) {
        let conns = self.conns();
        let mut waiting: Vec<_> = conns
            .values()
            .filter_map(|c| {
                let s = c.state();
                (s.in_flight == 0 && !s.close).then_some((s.idle_since, c))
            })
            .collect();
        if waiting.len() > n {
            waiting.select_nth_unstable_by_key(n, |(since, _)| *since);
            waiting.truncate(n);
        }
        for (_, c) in waiting {
            c.state().close = true;
            c.wake.notify_one();
        }
    }
}

/// A connection's entry in the registry, removed when its task ends (or is dropped).
struct Registered<'a> {
    open: &'a Registry,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.open.conns().remove(&self.id);
    }
}

/// One connection, as its task and the registry see it.
struct Conn {
    state: Mutex<State>,
    /// Its state changed, or it is asked to close: its task looks again.
    wake: Notify,
}

struct State {
    /// Requests whose headers are in and whose answer hyper has not fully taken: 0 while the
    /// connection waits for (or reads) a request's headers.
    in_flight: usize,
    /// Since when it waits for a request: accepted, or its last answer taken.
    idle_since: Instant,
    /// Whether it has answered a request (then it waits under the keep-alive timeout).
    answered: bool,
    /// Asked to close for room (ignored once a request is in flight).
    close: bool,
}

impl State {
    fn keep_alive_until(&self, keep_alive: Duration) -> Option<Instant> {
        (self.answered && self.in_flight == 0 && !keep_alive.is_zero())
            .then(|| self.idle_since + keep_alive)
    }
}

impl Conn {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("connection state lock")
    }
}

/// One request in flight on a connection.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: Arc<Conn>) -> Busy {
        conn.state().in_flight += 1;
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.answered = true;
        }
        drop(s);
        self.0.wake.notify_one();
    }
}
