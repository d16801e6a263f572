//! Listeners of the emulated nodes: gRPC over TLS (tonic) whose connections all drop when
//! the node "reboots"; the accept loop the Kubernetes API on the VIP (`kube.rs`) shares.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

use waddle_talos::api::proto::cosi::resource::state_server::{State, StateServer};
use waddle_talos::api::proto::machine::image_service_server::{ImageService, ImageServiceServer};
use waddle_talos::api::proto::machine::lifecycle_service_server::{
    LifecycleService, LifecycleServiceServer,
};
use waddle_talos::api::proto::machine::machine_service_server::{
    MachineService, MachineServiceServer,
};

/// An I/O stream that fails (connection reset) once its token is cancelled, even while a
/// read is pending: this is how a "reboot" drops established connections.
pub struct KillableIo<T> {
    inner: T,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<T> KillableIo<T> {
    /// The wrapped stream (e.g. the TLS session, for the peer's certificate).
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn new(inner: T, token: &CancellationToken) -> Self {
        KillableIo {
            inner,
            killed: Box::pin(token.clone().cancelled_owned()),
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> Result<(), io::Error> {
        if self.killed.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "emulated node went down",
            ));
        }
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for KillableIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for KillableIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T> Connected for KillableIo<T> {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// A running listener; [`Listener::stop`] closes it and drops its connections.
#[derive(Debug)]
pub struct Listener {
    /// Where it listens.
    pub addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Listener {
    /// A listener whose accept loop is `task`, stopped through `cancel`.
    pub(crate) fn new(addr: SocketAddr, cancel: CancellationToken, task: JoinHandle<()>) -> Self {
        Listener {
            addr,
            cancel,
            task: Some(task),
        }
    }

    /// Stops accepting, kills established connections and waits until the port is free.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub(crate) async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(128)
}

pub(crate) fn accept_loop(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cancel: CancellationToken,
) -> tokio::sync::mpsc::Receiver<Result<KillableIo<TlsStream<TcpStream>>, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                a = listener.accept() => a,
            };
            let Ok((tcp, _)) = accepted else { continue };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                let res = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = hs => r,
                };
                // Handshake failures (e.g. a missing or foreign client certificate) only
                // close that connection.
                if let Ok(Ok(tls)) = res {
                    let _ = tx.send(Ok(KillableIo::new(tls, &cancel))).await;
                }
            });
        }
    });
    rx
}

/// Serves `svc` (`machine.MachineService`, `machine.ImageService`, `machine.LifecycleService`
/// and `cosi.resource.State`) with gRPC over TLS on
/// `addr`.
pub async fn serve_grpc<S: MachineService + State + ImageService + LifecycleService>(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    svc: S,
) -> io::Result<Listener> {
    let listener = bind(addr).await?;
    let addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let rx = accept_loop(listener, tls, cancel.clone());
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
    let shutdown = cancel.clone().cancelled_owned();
    let svc = Arc::new(svc);
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(
                MachineServiceServer::from_arc(svc.clone()).max_decoding_message_size(64 << 20),
            )
            .add_service(StateServer::from_arc(svc.clone()))
            .add_service(ImageServiceServer::from_arc(svc.clone()))
            .add_service(LifecycleServiceServer::from_arc(svc))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
    });
    Ok(Listener {
        addr,
        cancel,
        task: Some(task),
    })
}

/// Server TLS with no client authentication.
pub fn server_tls(
    crt_pem: &str,
    key_pem: &str,
    alpn_h2: bool,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = waddle_talos::api::tls::certs_from_pem(crt_pem)?;
    let key = waddle_talos::api::tls::private_key_from_pem(key_pem)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(waddle_talos::api::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    if alpn_h2 {
        cfg.alpn_protocols = vec![b"h2".to_vec()];
    }
    Ok(Arc::new(cfg))
}

/// Server TLS requiring a client certificate signed by `client_ca_pem`.
pub fn server_mtls(
    crt_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = waddle_talos::api::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in waddle_talos::api::tls::certs_from_pem(client_ca_pem)? {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let chain = waddle_talos::api::tls::certs_from_pem(crt_pem)?;
    let key = waddle_talos::api::tls::private_key_from_pem(key_pem)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}
