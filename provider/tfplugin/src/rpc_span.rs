//! One `tracing` span per provider RPC, so every log line written while an RPC is served
//! carries the fields Terraform users know from terraform-plugin-go:
//!
//! * `tf_rpc`: the RPC name (`PlanResourceChange`, ...),
//! * `tf_req_id`: an id unique to this request (UUID-shaped),
//! * `tf_resource_type`: recorded by the provider once it has decoded the request
//!   ([`record_resource_type`]),
//! * `tf_proto_version`: the plugin protocol.
//!
//! The layer wraps the tonic server; only `tfplugin6.Provider` calls get a span (the stdio,
//! controller, broker and health services are plumbing). "Received request" is logged at
//! TRACE and "Served request" (with `tf_req_duration_ms`) at DEBUG.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tracing::Instrument as _;

const PROVIDER_SERVICE: &str = "/tfplugin6.Provider/";

/// The tower layer to put on the plugin's tonic server.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcSpanLayer;

impl<S> tower::Layer<S> for RpcSpanLayer {
    type Service = RpcSpan<S>;
    fn layer(&self, inner: S) -> RpcSpan<S> {
        RpcSpan { inner }
    }
}

/// The service [`RpcSpanLayer`] makes.
#[derive(Debug, Clone)]
pub struct RpcSpan<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for RpcSpan<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(rpc) = req
            .uri()
            .path()
            .strip_prefix(PROVIDER_SERVICE)
            .map(str::to_string)
        else {
            return Box::pin(self.inner.call(req));
        };
        let span = tracing::error_span!(
            "rpc",
            tf_rpc = %rpc,
            tf_req_id = %request_id(),
            tf_proto_version = "6",
            tf_resource_type = tracing::field::Empty,
        );
        let fut = {
            let _entered = span.enter();
            tracing::trace!("Received request");
            self.inner.call(req)
        };
        let started = Instant::now();
        Box::pin(
            async move {
                let out = fut.await;
                tracing::debug!(
                    tf_req_duration_ms = started.elapsed().as_millis() as u64,
                    "Served request"
                );
                out
            }
            .instrument(span),
        )
    }
}

/// Records the request's resource (or data source, ephemeral resource) type on the current
/// RPC span, and logs that the request was decoded.
pub fn record_resource_type(type_name: &str) {
    tracing::Span::current().record("tf_resource_type", type_name);
    tracing::debug!("Calling provider defined {type_name}");
}

/// A request id, UUID-shaped: unique within this process (a counter) and, with the process
/// id and start time in it, across the provider processes of one run.
fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (base >> 32) as u32,
        (base >> 16) as u16,
        (base & 0xfff) as u16,
        (std::process::id() & 0xfff) as u16,
        n & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tower::{Layer as _, Service as _};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[derive(Clone)]
    struct Inner;
    impl tower::Service<http::Request<()>> for Inner {
        type Response = &'static str;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<&'static str, std::convert::Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            record_resource_type("waddle_network");
            tracing::info!(vmid = 7, "inside the handler");
            std::future::ready(Ok("ok"))
        }
    }

    fn lines(buf: &Buf) -> Vec<serde_json::Value> {
        let text = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[tokio::test]
    async fn every_line_of_a_provider_rpc_carries_its_fields() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let buf = Buf::default();
        let sub = tracing_subscriber::registry().with(crate::logging::HclogLayer::new(
            "provider.test",
            buf.clone(),
        ));
        let _g = tracing::subscriber::set_default(sub);
        let mut svc = RpcSpanLayer.layer(Inner);
        for _ in 0..2 {
            let req = http::Request::builder()
                .uri("/tfplugin6.Provider/PlanResourceChange")
                .body(())
                .expect("request");
            assert_eq!(svc.call(req).await.expect("call"), "ok");
        }
        let req = http::Request::builder()
            .uri("/plugin.GRPCStdio/StreamStdio")
            .body(())
            .expect("request");
        svc.call(req).await.expect("call");

        let lines = lines(&buf);
        let handler: Vec<_> = lines
            .iter()
            .filter(|l| l["@message"] == "inside the handler")
            .collect();
        assert_eq!(handler.len(), 3, "{lines:?}");
        for l in &handler[..2] {
            assert_eq!(l["tf_rpc"], "PlanResourceChange", "{l}");
            assert_eq!(l["tf_resource_type"], "waddle_network", "{l}");
            assert_eq!(l["tf_proto_version"], "6", "{l}");
            let id = l["tf_req_id"].as_str().expect("tf_req_id");
            assert_eq!(id.len(), 36, "{id}");
        }
        assert_ne!(
            handler[0]["tf_req_id"], handler[1]["tf_req_id"],
            "each request has its own id"
        );
        assert!(
            handler[2].get("tf_rpc").is_none(),
            "plumbing services get no RPC span: {}",
            handler[2]
        );
        let served: Vec<_> = lines
            .iter()
            .filter(|l| l["@message"] == "Served request")
            .collect();
        assert_eq!(served.len(), 2, "{lines:?}");
        assert!(served[0]["tf_req_duration_ms"].is_u64(), "{}", served[0]);
        assert_eq!(served[0]["tf_rpc"], "PlanResourceChange");
    }
}
