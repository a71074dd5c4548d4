//! A TCP proxy on loopback in front of a stand-in (S3 server, Azurite) that a test can turn
//! off: while down, it accepts connections and closes them at once, and cuts the ones in
//! progress, so the sink sees connection errors (transient) while the stand-in keeps its data.
//! It also keeps the first bytes each client sent (request lines and headers), so a test can
//! check how requests were signed.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct FaultProxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    /// Bumped on every change, so connections in progress notice they must be cut.
    epoch: watch::Sender<u64>,
    connections: Arc<AtomicU64>,
    sent: Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Bytes of client traffic kept per connection (enough for a request's head).
const KEEP_PER_CONNECTION: usize = 8 * 1024;

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let (epoch, _) = watch::channel(0u64);
        let connections = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (down, epoch, connections, sent) = (
                down.clone(),
                epoch.clone(),
                connections.clone(),
                sent.clone(),
            );
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    connections.fetch_add(1, Ordering::Relaxed);
                    let mut changed = epoch.subscribe();
                    let sent = sent.clone();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (mut client_rx, mut client_tx) = client.into_split();
                        let (mut server_rx, mut server_tx) = server.into_split();
                        let upstream = async {
                            let (mut buf, mut kept) = (vec![0u8; 16 * 1024], 0);
                            loop {
                                let n = match client_rx.read(&mut buf).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                };
                                if kept < KEEP_PER_CONNECTION {
                                    let keep = n.min(KEEP_PER_CONNECTION - kept);
                                    sent.lock().unwrap().extend_from_slice(&buf[..keep]);
                                    kept += keep;
                                }
                                if server_tx.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                            let _ = server_tx.shutdown().await;
                        };
                        let downstream = tokio::io::copy(&mut server_rx, &mut client_tx);
                        tokio::select! {
                            _ = async { tokio::join!(upstream, downstream) } => {}
                            _ = changed.changed() => {}
                        }
                    });
                }
            }
        });
        FaultProxy {
            addr,
            down,
            epoch,
            connections,
            sent,
            task,
        }
    }

    /// What clients sent so far (the first bytes of each connection), as text.
    pub fn sent_text(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Down: new connections are closed at once and open ones are cut. Up: forwarding again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Connections forwarded so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
