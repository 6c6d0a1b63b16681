//! From an allowed destination to the far side of a tunnel, for every listener that tunnels (an
//! HTTP `CONNECT`, a SOCKS `CONNECT`): dialed through the router (resolved, every address checked
//! again, only a checked one dialed), or through the parent proxy when there is one.

use std::net::SocketAddr;

use hyper_util::rt::TokioIo;
use policy::{Decision, Target};

use crate::context::Generation;
use crate::error::Failure;
use crate::tunnel::Origin;

/// The far side of a tunnel, reached.
pub(crate) struct Reached {
    /// The connection.
    pub(crate) origin: Origin,
    /// The address connected to (the parent proxy's when chaining).
    pub(crate) addr: SocketAddr,
    /// The decision the tunnel is audited with ([`crate::route::Router::settle`]).
    pub(crate) decision: Decision,
}

/// Opens the far side for `target`, which `decision` allowed (or report mode let through).
pub(crate) async fn open(
    config: &crate::config::ProxyConfig,
    generation: &Generation,
    target: &Target,
    decision: Decision,
) -> Result<Reached, Failure> {
    match &config.parent {
        None => {
            let opened = generation.router.open(target).await?;
            Ok(Reached {
                origin: Origin::Direct(opened.stream),
                addr: opened.addr,
                decision: generation.router.settle(decision, Some(opened.addr)),
            })
        }
        Some(parent) => {
            let upgraded = parent
                .tunnel(target, &generation.attribution, &config.limits)
                .await?;
            Ok(Reached {
                origin: Origin::Parent(TokioIo::new(upgraded)),
                addr: parent.addr,
                decision,
            })
        }
    }
}
