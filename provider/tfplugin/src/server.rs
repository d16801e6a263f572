//! The plugin server: listener, AutoMTLS, go-plugin services and lifecycle.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status, Streaming};

use crate::handshake::{HandshakeError, HandshakeInfo, LaunchEnv, ListenAddr, Transport};
use crate::health::health_check_response::ServingStatus;
use crate::health::health_server::{Health, HealthServer};
use crate::health::{HealthCheckRequest, HealthCheckResponse};
use crate::plugin::grpc_broker_server::{GrpcBroker, GrpcBrokerServer};
use crate::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use crate::plugin::grpc_stdio_server::GrpcStdioServer;
use crate::plugin::{ConnInfo, Empty};
use crate::stdio::StdioService;
use crate::tfplugin6::provider_server::{Provider, ProviderServer};
use crate::tls::TlsError;

/// Cancelled when the plugin must shut down (GRPCController.Shutdown, SIGTERM,
/// or [`PluginServer::shutdown_signal`] triggered by the embedder).
pub type ShutdownSignal = CancellationToken;

/// Largest gRPC message accepted or sent (schemas and states can be large).
const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;
/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The launch environment was refused (message meant for a human).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// AutoMTLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No listener could be created.
    #[error("cannot listen for the host: {0}")]
    Listen(#[source] io::Error),
    /// Writing the handshake line or redirecting stdout failed.
    #[error("cannot write the handshake to stdout: {0}")]
    Stdout(#[source] io::Error),
    /// The gRPC server failed.
    #[error("gRPC server error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// How to serve. Build with [`ServeOptions::from_env`] in a provider binary.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Binary name, e.g. `terraform-provider-waddle` (logs use `provider.<name>`).
    pub name: String,
    /// The host's launch environment.
    pub env: LaunchEnv,
    /// Listener kind (default: unix socket, TCP fallback).
    pub transport: Transport,
    /// Redirect fd 1 into GRPCStdio after printing the handshake line
    /// (only done by [`serve`]; never in-process).
    pub capture_stdout: bool,
    /// Ignore SIGINT (the host handles Ctrl-C) and shut down on SIGTERM.
    pub handle_signals: bool,
    /// Triggered to shut down; also observable by the provider.
    pub shutdown: ShutdownSignal,
    /// How long in-flight RPCs may take to finish after shutdown starts.
    pub grace_period: Duration,
    /// Poll the parent process id this often and shut down when it changes: a host killed
    /// by SIGKILL or the OOM killer never sends `Shutdown`, and its plugin is re-parented.
    /// `None` (in-process servers) does not watch.
    pub watch_parent: Option<Duration>,
}

/// How often a provider binary checks that the host that started it is still there.
pub const PARENT_POLL_INTERVAL: Duration = Duration::from_millis(500);

impl ServeOptions {
    /// Options for a provider binary: environment from the process, stdout
    /// capture and signal handling on.
    pub fn from_env(name: impl Into<String>) -> Self {
        ServeOptions {
            name: name.into(),
            env: LaunchEnv::from_env(),
            transport: Transport::Auto,
            capture_stdout: true,
            handle_signals: true,
            shutdown: ShutdownSignal::new(),
            grace_period: Duration::from_secs(2),
            watch_parent: Some(PARENT_POLL_INTERVAL),
        }
    }

    /// Options for an in-process server (tests): the given environment, no
    /// stdout capture, no signal handlers.
    pub fn in_process(env: LaunchEnv) -> Self {
        ServeOptions {
            name: "waddle-tfplugin".into(),
            env,
            transport: Transport::Auto,
            capture_stdout: false,
            handle_signals: false,
            shutdown: ShutdownSignal::new(),
            grace_period: Duration::from_secs(2),
            watch_parent: None,
        }
    }
}

/// A private (0700) directory holding the unix socket, removed on drop.
#[derive(Debug)]
struct SocketDir(PathBuf);

impl SocketDir {
    fn create(parent: Option<&Path>) -> io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let parent = parent
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let mut rnd = [0u8; 8];
        crate::tls::crypto_provider()
            .secure_random
            .fill(&mut rnd)
            .map_err(|_| io::Error::other("no randomness"))?;
        let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let dir = parent.join(format!("waddle-plugin-{name}"));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        // The umask may have removed bits we never wanted anyway; make sure
        // no group/other bits are set.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(SocketDir(dir))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// One accepted (and, with AutoMTLS, authenticated) connection.
struct ServerIo(Pin<Box<dyn Io>>);

impl Connected for ServerIo {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for ServerIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.as_mut().poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.as_mut().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.as_mut().poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.0.as_mut().poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

type ServeFuture = Pin<Box<dyn std::future::Future<Output = Result<(), ServeError>> + Send>>;

/// A bound plugin server, not yet serving.
///
/// ```no_run
/// # async fn demo<P: waddle_tfplugin::tfplugin6::provider_server::Provider>(p: P)
/// #   -> Result<(), waddle_tfplugin::ServeError> {
/// use waddle_tfplugin::{LaunchEnv, PluginServer, ServeOptions};
/// let server = PluginServer::bind(p, ServeOptions::in_process(LaunchEnv::for_host(None))).await?;
/// let line = server.handshake().line(); // what a host would read
/// server.run().await // until GRPCController.Shutdown
/// # }
/// ```
pub struct PluginServer {
    info: HandshakeInfo,
    listener: Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stdio: Arc<StdioService>,
    shutdown: ShutdownSignal,
    grace_period: Duration,
    handle_signals: bool,
    watch_parent: Option<Duration>,
    socket_dir: Option<SocketDir>,
    serve: Box<dyn FnOnce(mpsc::Receiver<io::Result<ServerIo>>) -> ServeFuture + Send>,
}

impl std::fmt::Debug for PluginServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginServer")
            .field("addr", &self.info.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl PluginServer {
    /// Negotiates the protocol, sets up AutoMTLS and binds the listener.
    pub async fn bind<P: Provider>(provider: P, opts: ServeOptions) -> Result<Self, ServeError> {
        let protocol_version = opts.env.negotiate()?;
        let (tls, server_cert_der) = match &opts.env.client_cert_pem {
            Some(pem) => {
                let identity = crate::tls::generate_server_identity()?;
                let cfg = crate::tls::server_config(&identity, pem)?;
                (
                    Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))),
                    Some(identity.cert_der.to_vec()),
                )
            }
            None => (None, None),
        };
        let (listener, addr, socket_dir) = listen(&opts)?;
        let info = HandshakeInfo {
            protocol_version,
            addr,
            server_cert_der,
        };
        let shutdown = opts.shutdown.clone();
        let stdio = Arc::new(StdioService::new(shutdown.clone()));
        let services = (
            ProviderServer::new(provider)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            GrpcControllerServer::new(Controller {
                shutdown: shutdown.clone(),
            }),
            GrpcStdioServer::from_arc(stdio.clone()),
            GrpcBrokerServer::new(Broker {
                shutdown: shutdown.clone(),
            }),
            HealthServer::new(HealthService {
                shutdown: shutdown.clone(),
            }),
        );
        let serve_shutdown = shutdown.clone();
        let serve = Box::new(move |rx: mpsc::Receiver<io::Result<ServerIo>>| {
            let (provider, controller, stdio, broker, health) = services;
            let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
            let fut = tonic::transport::Server::builder()
                .layer(crate::rpc_span::RpcSpanLayer)
                .add_service(provider)
                .add_service(controller)
                .add_service(stdio)
                .add_service(broker)
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, serve_shutdown.cancelled_owned());
            Box::pin(async move { fut.await.map_err(ServeError::from) }) as ServeFuture
        });
        Ok(PluginServer {
            info,
            listener,
            tls,
            stdio,
            shutdown,
            grace_period: opts.grace_period,
            handle_signals: opts.handle_signals,
            watch_parent: opts.watch_parent,
            socket_dir,
            serve,
        })
    }

    /// What the handshake line announces.
    pub fn handshake(&self) -> &HandshakeInfo {
        &self.info
    }

    /// The shutdown signal (cancel it to stop the server).
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.shutdown.clone()
    }

    /// Forwards `reader` to the host as the plugin's stdout (GRPCStdio).
    /// Must be called inside a tokio runtime.
    pub fn attach_stdout<R: AsyncRead + Send + Unpin + 'static>(&self, reader: R) {
        self.stdio.attach(reader);
    }

    /// Prints the handshake line to the process stdout and flushes it, then
    /// (if `capture`) redirects fd 1 into GRPCStdio.
    pub fn announce(&self, capture: bool) -> Result<(), ServeError> {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", self.info.line()).map_err(ServeError::Stdout)?;
        out.flush().map_err(ServeError::Stdout)?;
        drop(out);
        if capture {
            let rx = crate::stdio::redirect_stdout().map_err(ServeError::Stdout)?;
            self.stdio.attach(rx);
        }
        Ok(())
    }

    /// Serves until shut down, then removes the socket directory.
    pub async fn run(self) -> Result<(), ServeError> {
        let PluginServer {
            listener,
            tls,
            shutdown,
            grace_period,
            handle_signals,
            watch_parent,
            socket_dir,
            serve,
            ..
        } = self;
        if handle_signals {
            spawn_signal_handlers(shutdown.clone());
        }
        if let Some(every) = watch_parent {
            tokio::spawn(watch_parent_process(shutdown.clone(), every));
        }
        let (tx, rx) = mpsc::channel(16);
        let accept = tokio::spawn(accept_loop(listener, tls, tx, shutdown.clone()));
        let served = serve(rx);
        tokio::pin!(served);
        let result = tokio::select! {
            r = &mut served => r,
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(grace_period).await;
            } => {
                tracing::warn!("in-flight RPCs did not finish within the grace period");
                Ok(())
            }
        };
        shutdown.cancel();
        accept.abort();
        drop(socket_dir);
        tracing::debug!("plugin server stopped");
        result
    }
}

fn listen(opts: &ServeOptions) -> Result<(Listener, ListenAddr, Option<SocketDir>), ServeError> {
    if opts.transport != Transport::Tcp {
        let attempt = (|| -> io::Result<_> {
            let dir = SocketDir::create(opts.env.unix_socket_dir.as_deref())?;
            let path = dir.0.join("plugin.sock");
            let l = UnixListener::bind(&path)?;
            Ok((l, path, dir))
        })();
        match attempt {
            Ok((l, path, dir)) => {
                return Ok((Listener::Unix(l), ListenAddr::Unix(path), Some(dir)));
            }
            Err(e) if opts.transport == Transport::Unix => return Err(ServeError::Listen(e)),
            Err(e) => {
                tracing::debug!(error = %e, "unix socket unavailable, falling back to TCP");
            }
        }
    }
    let (min, max) = opts.env.port_range()?;
    let mut last_err = io::Error::new(io::ErrorKind::AddrNotAvailable, "no port in range");
    for port in min..=max {
        let std_listener = match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => l,
            Err(e) => {
                last_err = e;
                continue;
            }
        };
        std_listener
            .set_nonblocking(true)
            .map_err(ServeError::Listen)?;
        let l = TcpListener::from_std(std_listener).map_err(ServeError::Listen)?;
        let addr = l.local_addr().map_err(ServeError::Listen)?;
        return Ok((Listener::Tcp(l), ListenAddr::Tcp(addr), None));
    }
    Err(ServeError::Listen(last_err))
}

async fn accept_loop(
    listener: Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tx: mpsc::Sender<io::Result<ServerIo>>,
    shutdown: ShutdownSignal,
) {
    loop {
        let accepted: io::Result<Pin<Box<dyn Io>>> = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = async {
                match &listener {
                    Listener::Unix(l) => l.accept().await.map(|(s, _)| Box::pin(s) as Pin<Box<dyn Io>>),
                    Listener::Tcp(l) => {
                        let (s, _) = l.accept().await?;
                        s.set_nodelay(true)?;
                        Ok(Box::pin(s) as Pin<Box<dyn Io>>)
                    }
                }
            } => r,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        match &tls {
            None => {
                if tx.send(Ok(ServerIo(stream))).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(ServerIo(Box::pin(tls)))).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "TLS handshake with the host failed");
                        }
                        Err(_) => tracing::warn!("TLS handshake with the host timed out"),
                    }
                });
            }
        }
    }
}

fn spawn_signal_handlers(shutdown: ShutdownSignal) {
    use tokio::signal::unix::{signal, SignalKind};
    if let Ok(mut int) = signal(SignalKind::interrupt()) {
        tokio::spawn(async move {
            // The host forwards Ctrl-C itself (StopProvider, then Shutdown).
            while int.recv().await.is_some() {
                tracing::debug!("ignoring SIGINT; waiting for the host to stop the plugin");
            }
        });
    }
    if let Ok(mut term) = signal(SignalKind::terminate()) {
        tokio::spawn(async move {
            if term.recv().await.is_some() {
                tracing::info!("SIGTERM received, shutting down");
                shutdown.cancel();
            }
        });
    }
}

/// Cancels `shutdown` once the process that started this one has exited. The plugin is then
/// re-parented (to init or a subreaper), so the parent process id changes; the host's gRPC
/// connection closing is not used, because a host may reconnect.
async fn watch_parent_process(shutdown: ShutdownSignal, every: Duration) {
    let parent = std::os::unix::process::parent_id();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = std::os::unix::process::parent_id();
        if now != parent {
            tracing::warn!(
                parent,
                now,
                "the host process that started this provider exited; cancelling in-flight \
                 operations and shutting down"
            );
            shutdown.cancel();
            return;
        }
    }
}

/// Prints the handshake line, then serves until shutdown.
pub async fn serve<P: Provider>(provider: P, opts: ServeOptions) -> Result<(), ServeError> {
    let capture = opts.capture_stdout;
    let server = PluginServer::bind(provider, opts).await?;
    server.announce(capture)?;
    server.run().await
}

/// Synchronous entry point for a provider binary's `main`: initialises
/// go-hclog logging, serves, and turns errors into a message on stderr and a
/// non-zero exit code.
///
/// ```no_run
/// # struct MyProvider;
/// # #[tonic::async_trait]
/// # impl waddle_tfplugin::tfplugin6::provider_server::Provider for MyProvider {}
/// fn main() -> std::process::ExitCode {
///     let opts = waddle_tfplugin::ServeOptions::from_env("terraform-provider-waddle");
///     waddle_tfplugin::serve_main(MyProvider, opts)
/// }
/// ```
pub fn serve_main<P: Provider>(provider: P, opts: ServeOptions) -> std::process::ExitCode {
    // Fail fast (and in plain text) before starting anything.
    if let Err(e) = opts.env.negotiate() {
        eprintln!("{e}");
        return std::process::ExitCode::FAILURE;
    }
    crate::logging::try_init(&format!("provider.{}", opts.name));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(provider, opts));
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "plugin server failed");
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The most async worker threads the plugin starts. A provider waits on the network almost
/// all the time (CPU-heavy work such as key generation goes to the blocking pool), so a few
/// workers keep `-parallelism` busy; one per core, tokio's default, would cost a stack and a
/// malloc arena per core on a large workstation for nothing.
const MAX_WORKER_THREADS: usize = 4;

fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_WORKER_THREADS)
}

struct Controller {
    shutdown: ShutdownSignal,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::debug!("GRPCController.Shutdown received");
        // Let the response go out before the server stops accepting.
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            shutdown.cancel();
        });
        Ok(Response::new(Empty {}))
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

struct Broker {
    shutdown: ShutdownSignal,
}

#[tonic::async_trait]
impl GrpcBroker for Broker {
    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<BoxStream<ConnInfo>>, Status> {
        let mut incoming = request.into_inner();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    m = incoming.message() => match m {
                        Ok(Some(info)) => tracing::debug!(service_id = info.service_id, "ignoring broker connection info"),
                        _ => break,
                    },
                }
            }
        });
        // waddle never brokers connections: keep the stream open until shutdown.
        let stream = futures::StreamExt::take_until(
            futures::stream::pending::<Result<ConnInfo, Status>>(),
            self.shutdown.clone().cancelled_owned(),
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

struct HealthService {
    shutdown: ShutdownSignal,
}

fn health_status(service: &str) -> Result<ServingStatus, Status> {
    match service {
        "" | "plugin" => Ok(ServingStatus::Serving),
        other => Err(Status::not_found(format!("unknown service {other:?}"))),
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let status = health_status(&request.get_ref().service)?;
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<BoxStream<HealthCheckResponse>>, Status> {
        let status = health_status(&request.get_ref().service)?;
        let first = futures::stream::once(async move {
            Ok(HealthCheckResponse {
                status: status as i32,
            })
        });
        let stream = futures::StreamExt::take_until(
            futures::StreamExt::chain(first, futures::stream::pending()),
            self.shutdown.clone().cancelled_owned(),
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_follow_the_cores_up_to_the_cap() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(worker_threads(), cores.min(MAX_WORKER_THREADS));
        assert!((1..=MAX_WORKER_THREADS).contains(&worker_threads()));
    }
}
