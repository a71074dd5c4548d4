//! The accept loops. `axum::serve` has no header-read timeout and no buffer limit, so a
//! slow-loris client (headers sent a byte at a time) or a client with megabytes of headers
//! could hold connections and memory; hyper's own connection builder has both, and the HTTP
//! loop adds a cap on open connections. tonic has neither a cap nor a first-bytes timeout,
//! so the gRPC port gets its connections from [`grpc_incoming`], which adds both.
//!
//! tonic's server-wide `timeout` would apply the unary deadline to stream calls too (a long
//! `IngestStream` was killed with all its results lost, security review M17), so each gRPC
//! service is wrapped in [`Deadline`] instead: unary calls get `server.request_timeout`,
//! `IngestStream` calls enforce their own limits and get only a backstop here.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::ServerLimits;

/// Serves `app` on `listener` until `shutdown` fires, then stops accepting and waits for
/// the open connections to finish their requests (the caller bounds that wait).
pub(crate) async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    while let Some((stream, slot)) = accept(&listener, &slots, &shutdown).await {
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                // Timeouts, oversized heads and resets: the client's problem, not ours.
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The next connection once a slot is free, with its slot; `None` once `shutdown` fired.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let slot = tokio::select! {
        _ = shutdown.cancelled() => return None,
        slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, slot));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// The gRPC port's connections: at most `limits.max_connections` open at once (further
/// clients wait in the kernel's accept queue), and a connection that sends nothing within
/// `limits.header_read_timeout` of being accepted is closed before tonic sees it, so idle
/// sockets cannot hold the slots. (Once HTTP/2 is spoken, an idle channel is normal for gRPC
/// clients; tonic's keep-alive pings close dead ones.) TLS, when configured, is done by
/// tonic on top of these.
pub(crate) fn grpc_incoming(
    listener: TcpListener,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> impl futures_util::Stream<Item = io::Result<Limited>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let first_bytes = limits.header_read_timeout;
    // Bounded by the slots: each waiting connection holds one.
    let (tx, rx) = mpsc::unbounded_channel::<Limited>();
    tokio::spawn(async move {
        while let Some((stream, slot)) = accept(&listener, &slots, &shutdown).await {
            let tx = tx.clone();
            // Waiting for the first bytes happens beside the loop, so one silent client
            // does not hold up the next.
            tokio::spawn(async move {
                // `peek`, not `readable()`: the latter may report a fresh socket readable
                // before any byte arrived.
                let mut first = [0u8; 1];
                match tokio::time::timeout(first_bytes, stream.peek(&mut first)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(_)) => {
                        let _ = tx.send(Limited {
                            stream,
                            _slot: slot,
                        });
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "grpc connection failed"),
                    Err(_) => {
                        tracing::debug!(timeout = ?first_bytes, "grpc connection sent nothing; closed");
                    }
                }
            });
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|conn| (Ok(conn), rx))
    })
}

/// An accepted gRPC connection holding its slot until it closes.
pub(crate) struct Limited {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A gRPC service whose calls are cut off after a deadline chosen by method: `stream` for
/// the method paths ending in one of `streaming`, `unary` for every other.
#[derive(Clone)]
pub(crate) struct Deadline<S> {
    pub(crate) inner: S,
    pub(crate) unary: Duration,
    pub(crate) stream: Duration,
    pub(crate) streaming: &'static [&'static str],
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Deadline<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower_service::Service<http::Request<tonic::body::Body>> for Deadline<S>
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path();
        let limit = if self.streaming.iter().any(|m| path.ends_with(m)) {
            self.stream
        } else {
            self.unary
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limit, call).await {
                Ok(response) => response,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the call did not finish within {} s (server.request_timeout for unary calls)",
                    limit.as_secs_f64()
                ))
                .into_http()),
            }
        })
    }
}
