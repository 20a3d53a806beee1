//! What `muster run` starts from a configuration file: muster's own EPMD when the `erlang`
//! connector needs one, and the cluster's builder.

use muster::config::{ConfigFile, ConnectorConfig, EmbeddedEpmd};
use muster::tokio::{Builder, EpmdHandle, NoneConnector, TcpConnector};

/// Events the tool's cluster and its output channel hold before any is dropped.
pub(crate) const EVENTS: usize = 262_144;

/// The cluster, ready to spawn, and muster's own EPMD when it runs one (it stops when this is
/// dropped).
pub(crate) struct Started {
    pub(crate) builder: Builder,
    pub(crate) epmd: Option<EpmdHandle>,
}

/// Starts what `file` needs and returns a builder with its node, connector and topologies.
pub(crate) async fn start(file: ConfigFile) -> std::io::Result<Started> {
    let mut epmd = None;
    let builder = match &file.connector {
        ConnectorConfig::None => Builder::new(NoneConnector),
        ConnectorConfig::Tcp { port } => Builder::new(TcpConnector::new(*port)),
        ConnectorConfig::Erlang(e) => {
            let port = e.epmd_port;
            let run = match e.embedded_epmd {
                EmbeddedEpmd::Always => true,
                EmbeddedEpmd::Never => false,
                EmbeddedEpmd::Auto => !muster::tokio::epmd_running(("127.0.0.1", port)).await,
            };
            if run {
                let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
                epmd = Some(muster::tokio::run_epmd(addr).await?);
            }
            let node = file
                .erlang_node()
                .ok_or_else(|| std::io::Error::other("the erlang connector needs [node] name"))?;
            // The core listens once the cluster runs; an address that cannot be had is said
            // now, before anything starts, rather than in every connect's failure.
            std::net::TcpListener::bind(e.listen).map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("[connector] listen = \"{}\": {err}", e.listen),
                )
            })?;
            // The cluster itself is the Erlang node: the core's distribution, whose bytes the
            // adapter moves.
            Builder::erlang(node)
        }
        other => {
            let why = format!("this tool cannot run the {other:?} connector");
            return Err(std::io::Error::other(why));
        }
    };
    // A poll may bring a hundred thousand endpoints at once: the tool holds their events
    // rather than drop them (what it still cannot hold, it says it missed).
    let cluster = file.cluster.max_queued_events(EVENTS);
    let builder = file.topologies.into_iter().fold(
        builder.config(cluster).event_capacity(EVENTS),
        Builder::topology,
    );
    Ok(Started { builder, epmd })
}
