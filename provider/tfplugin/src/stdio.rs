//! GRPCStdio: what the plugin writes to stdout after the handshake is
//! forwarded to the host over `plugin.GRPCStdio/StreamStdio`.

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::pin::Pin;
use std::sync::Mutex;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::plugin::grpc_stdio_server::GrpcStdio;
use crate::plugin::{stdio_data, StdioData};

/// Chunks buffered while no host is streaming; beyond that output is dropped.
const BUFFERED_CHUNKS: usize = 256;

/// Redirects file descriptor 1 into a pipe and returns its read end.
///
/// Call only after the handshake line has been written and flushed.
pub(crate) fn redirect_stdout() -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, both descriptors are open and owned by us.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    use std::os::fd::AsRawFd as _;
    // SAFETY: dup2 onto fd 1 with a valid open descriptor; `write` is closed
    // afterwards by its OwnedFd, leaving fd 1 as the only write end.
    if unsafe { libc::dup2(write.as_raw_fd(), libc::STDOUT_FILENO) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    drop(write);
    tokio::net::unix::pipe::Receiver::from_owned_fd(read)
}

/// The GRPCStdio service.
pub(crate) struct StdioService {
    rx: Mutex<Option<mpsc::Receiver<StdioData>>>,
    tx: Mutex<Option<mpsc::Sender<StdioData>>>,
    shutdown: CancellationToken,
}

impl StdioService {
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
        StdioService {
            rx: Mutex::new(Some(rx)),
            tx: Mutex::new(Some(tx)),
            shutdown,
        }
    }

    /// Starts forwarding `reader` as the STDOUT channel (once).
    pub(crate) fn attach<R>(&self, mut reader: R)
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let Some(tx) = self.tx.lock().ok().and_then(|mut g| g.take()) else {
            return;
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut dropped = 0usize;
            loop {
                let n = tokio::select! {
                    r = reader.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    },
                    _ = shutdown.cancelled() => break,
                };
                let chunk = StdioData {
                    channel: stdio_data::Channel::Stdout as i32,
                    data: buf[..n].to_vec(),
                };
                match tx.try_send(chunk) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped += n;
                        tracing::debug!(dropped, "plugin stdout not consumed by the host");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
        });
    }
}

type StdioStream = Pin<Box<dyn Stream<Item = Result<StdioData, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcStdio for StdioService {
    async fn stream_stdio(&self, _request: Request<()>) -> Result<Response<StdioStream>, Status> {
        let rx = self
            .rx
            .lock()
            .map_err(|_| Status::internal("stdio state poisoned"))?
            .take()
            .ok_or_else(|| Status::failed_precondition("StreamStdio may only be called once"))?;
        let stream =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|d| (Ok(d), rx)) },
            );
        let stream =
            futures::StreamExt::take_until(stream, self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }
}
