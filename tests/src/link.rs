//! A network hop on loopback: [`SlowLink`] relays TCP to a real server and
//! delays every chunk, each way, by a fixed time, as a link between two
//! machines does. Bandwidth is not limited and order is kept, so what a
//! test sees is the latency alone: a client that waits on one round trip
//! after another pays it each time; one that keeps several in flight pays
//! it once for them all.

use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A relay to `target` on a free local port; stops relaying when dropped.
#[derive(Debug)]
pub struct SlowLink {
    port: u16,
    tasks: JoinSet<()>,
}

impl SlowLink {
    /// Relays connections on a free port to `target` (`host:port`), each
    /// chunk delivered `delay` after it was read, in either direction.
    pub async fn start(target: &str, delay: Duration) -> Self {
        #[allow(clippy::expect_used)]
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the link's port");
        #[allow(clippy::expect_used)]
        let port = listener.local_addr().expect("the link's address").port();
        let target = target.to_owned();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            // Each connection's relays end with it, or with the link.
            let mut connections = JoinSet::new();
            while let Ok((near, _)) = listener.accept().await {
                let Ok(far) = TcpStream::connect(&target).await else { continue };
                let (near_read, near_write) = near.into_split();
                let (far_read, far_write) = far.into_split();
                connections.spawn(relay(near_read, far_write, delay));
                connections.spawn(relay(far_read, near_write, delay));
            }
        });
        Self { port, tasks }
    }

    /// The link's end as a NATS URL.
    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Copies `from` to `to`, each chunk held until `delay` after it was read.
/// Reading runs ahead of writing (a channel between them), so the delay is
/// added once per chunk, not once per chunk and per chunk before it.
async fn relay(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    delay: Duration,
) {
    let (send, mut receive) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, chunk)) = receive.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if send.send((Instant::now() + delay, buffer[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(reader, writer);
}
