//! The gRPC side of the external driver: the connection to each address (TCP or a Unix socket),
//! the per-address slots that bound concurrent rollouts (`deploy.driver.n_concurrent_rollouts`),
//! and every call with its timeout, retries with exponential backoff, and latency statistics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};

use super::ExternalError;
use crate::alpasim_grpc::egodriver::egodriver_service_client::EgodriverServiceClient;

/// First retry delay; doubled for each further retry.
pub const BACKOFF: Duration = Duration::from_millis(50);

/// Latencies of one RPC method.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MethodStats {
    /// Duration of each successful call (s).
    pub durations_s: Vec<f64>,
    /// Per call: time it waited for a free slot at its address (s), and how many calls were
    /// waiting when it started.
    pub waits: Vec<(f64, usize)>,
    /// Calls that failed after their retries.
    pub failures: u64,
    /// Retries made.
    pub retries: u64,
}

/// RPC statistics per method name (for telemetry and the benchmark).
pub type RpcStats = HashMap<&'static str, MethodStats>;

pub(super) struct Address {
    pub(super) name: String,
    pub(super) client: EgodriverServiceClient<Channel>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// Waits for a slot at an address; returns it with the wait (s) and the queue depth at the start.
pub(super) async fn slot(
    permits: Arc<Semaphore>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
) -> (Option<tokio::sync::OwnedSemaphorePermit>, f64, usize) {
    use std::sync::atomic::Ordering;
    let depth = waiting.fetch_add(1, Ordering::Relaxed);
    let t = Instant::now();
    let permit = permits.acquire_owned().await.ok();
    waiting.fetch_sub(1, Ordering::Relaxed);
    (permit, t.elapsed().as_secs_f64(), depth)
}

pub(super) fn record_wait(stats: &Mutex<RpcStats>, method: &'static str, wait: f64, depth: usize) {
    stats
        .lock()
        .expect("stats lock")
        .entry(method)
        .or_default()
        .waits
        .push((wait, depth));
}

/// Where a server listens: its endpoint, and the socket path for a `unix:` address.
pub(super) fn endpoint(address: &str) -> Result<(Endpoint, Option<String>), ExternalError> {
    let bad = |m: String| ExternalError::BadAddress {
        address: address.to_string(),
        message: m,
    };
    if let Some(path) = address
        .strip_prefix("unix://")
        .or_else(|| address.strip_prefix("unix:"))
    {
        // The URI is only a placeholder: the connector below dials the socket.
        let e = Endpoint::try_from("http://[::1]:50051").map_err(|e| bad(e.to_string()))?;
        return Ok((e, Some(path.to_string())));
    }
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Ok((
        Endpoint::from_shared(uri).map_err(|e| bad(e.to_string()))?,
        None,
    ))
}

/// Calls `f` with a timeout, retrying with backoff; records the duration or the failure.
pub(super) async fn call<T, F, Fut>(
    stats: &Mutex<RpcStats>,
    method: &'static str,
    timeout: Duration,
    retries: u32,
    mut f: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut delay = BACKOFF;
    let mut attempt = 0;
    loop {
        let start = Instant::now();
        let (error, transient) = match tokio::time::timeout(timeout, f()).await {
            Ok(Ok(r)) => {
                let mut s = stats.lock().expect("stats lock");
                s.entry(method)
                    .or_default()
                    .durations_s
                    .push(start.elapsed().as_secs_f64());
                return Ok(r.into_inner());
            }
            Ok(Err(status)) => (
                format!(
                    "{method} failed: {} ({:?})",
                    status.message(),
                    status.code()
                ),
                // Worth another try: the server is (re)starting, overloaded or slow.
                matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::Unknown
                ),
            ),
            Err(_) => (
                format!("{method} timed out after {:.1} s", timeout.as_secs_f64()),
                true,
            ),
        };
        if attempt >= retries || !transient {
            stats
                .lock()
                .expect("stats lock")
                .entry(method)
                .or_default()
                .failures += 1;
            return Err(error);
        }
        stats
            .lock()
            .expect("stats lock")
            .entry(method)
            .or_default()
            .retries += 1;
        attempt += 1;
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}
