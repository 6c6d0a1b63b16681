//! Memory back after a burst: once a second, the connections open on the proxy and the DNS
//! stub's servers are counted, with the most open at once since the last count; when [`heap::Burst`] says a burst is over, the allocator's free
//! memory is released on a blocking thread (it holds the allocator's locks for a few
//! milliseconds; never on a request's path). docs/benchmarks.md has what it returns and costs.

use std::time::Duration;

use serve::Server;
use tokio_util::sync::CancellationToken;

/// How often the open connections are counted.
const SAMPLE: Duration = Duration::from_secs(1);

/// Watches `servers` until `shutdown`.
pub async fn watch(servers: Vec<Server>, shutdown: CancellationToken) {
    let mut burst = heap::Burst::new();
    let mut ticks = tokio::time::interval(SAMPLE);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            now = ticks.tick() => {
                // Tracked tasks: connections, the tunnels and inspected sessions that outlive
                // them, DNS lookups in flight.
                let open = servers.iter().map(|s| s.tasks().len()).sum();
                // A burst shorter than a sample still shows by its peak.
                burst.saw_peak(servers.iter().map(Server::take_peak).sum());
                if burst.observe(now.into_std(), open) {
                    release(open).await;
                }
            }
        }
    }
}

async fn release(open: usize) {
    let started = std::time::Instant::now();
    match tokio::task::spawn_blocking(heap::release_free_memory).await {
        Ok(returned) => tracing::debug!(
            open,
            returned,
            took_us = started.elapsed().as_micros() as u64,
            "burst over: free memory released to the system"
        ),
        Err(error) => tracing::warn!(%error, "releasing free memory failed"),
    }
}
