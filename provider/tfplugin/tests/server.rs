//! In-process tests: the real server on its real unix socket (or TCP), driven
//! by a tonic client over TLS like go-plugin hosts do.

mod common;
#[path = "../src/bin/echo/provider.rs"]
mod provider;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::Ordering;

use common::{get_metadata, shutdown, GUARD};
use waddle_tfplugin::client::{connect, ClientIdentity};
use waddle_tfplugin::health::health_check_response::ServingStatus;
use waddle_tfplugin::health::health_client::HealthClient;
use waddle_tfplugin::health::HealthCheckRequest;
use waddle_tfplugin::plugin::conn_info::Knock;
use waddle_tfplugin::plugin::grpc_broker_client::GrpcBrokerClient;
use waddle_tfplugin::plugin::grpc_stdio_client::GrpcStdioClient;
use waddle_tfplugin::plugin::{stdio_data, ConnInfo};
use waddle_tfplugin::tfplugin6::provider_client::ProviderClient;
use waddle_tfplugin::tfplugin6::stop_provider;
use waddle_tfplugin::{
    HandshakeInfo, LaunchEnv, ListenAddr, PluginServer, ServeError, ServeOptions, Transport,
};

type Running = (
    HandshakeInfo,
    tokio::task::JoinHandle<Result<(), ServeError>>,
    provider::EchoProvider,
);

async fn start(opts: ServeOptions) -> (PluginServer, provider::EchoProvider) {
    let p = provider::EchoProvider::default();
    let server = PluginServer::bind(p.clone(), opts).await.expect("bind");
    (server, p)
}

async fn start_running(opts: ServeOptions) -> Running {
    let (server, p) = start(opts).await;
    let info = server.handshake().clone();
    (info, tokio::spawn(server.run()), p)
}

fn mtls_opts(id: &ClientIdentity) -> ServeOptions {
    ServeOptions::in_process(LaunchEnv::for_host(Some(id.cert_pem())))
}

#[tokio::test]
async fn mtls_with_terraform_like_p521_cert_works_and_shutdown_cleans_up() {
    let id = ClientIdentity::generate().unwrap();
    let (info, task, _p) = start_running(mtls_opts(&id)).await;

    // Unix socket in a private directory, certificate announced.
    let ListenAddr::Unix(path) = &info.addr else {
        panic!("expected a unix socket, got {:?}", info.addr)
    };
    let dir = path.parent().unwrap().to_path_buf();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "socket dir must be private");
    let line = info.line();
    assert!(line.starts_with("1|6|unix|"), "{line}");
    assert!(!line.ends_with('='), "no base64 padding: {line}");
    assert_eq!(HandshakeInfo::parse(&line).unwrap(), info);

    let ch = connect(&info, Some(&id)).await.expect("connect");
    let md = get_metadata(ch.clone())
        .await
        .expect("GetMetadata over mTLS");
    assert_eq!(md.data_sources[0].type_name, "echo_data");
    assert!(md.server_capabilities.unwrap().plan_destroy);

    // Unimplemented RPCs answer Unimplemented (not a crash).
    let err = ProviderClient::new(ch.clone())
        .get_functions(waddle_tfplugin::tfplugin6::get_functions::Request {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    shutdown(ch).await;
    let res = tokio::time::timeout(GUARD, task)
        .await
        .expect("server stops");
    res.unwrap().expect("clean shutdown");
    assert!(!dir.exists(), "socket directory removed on shutdown");
}

async fn refused(info: &HandshakeInfo, id: Option<&ClientIdentity>) -> bool {
    match connect(info, id).await {
        Err(_) => true,
        Ok(ch) => get_metadata(ch).await.is_err(),
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let id = ClientIdentity::generate().unwrap();
    let (info, task, _p) = start_running(mtls_opts(&id)).await;
    assert!(refused(&info, None).await, "no client cert must be refused");
    // The right client still works afterwards.
    let ch = connect(&info, Some(&id)).await.unwrap();
    assert!(get_metadata(ch.clone()).await.is_ok());
    shutdown(ch).await;
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn client_with_another_certificate_is_refused() {
    let id = ClientIdentity::generate().unwrap();
    let other = ClientIdentity::generate().unwrap();
    let (info, task, _p) = start_running(mtls_opts(&id)).await;
    assert!(
        refused(&info, Some(&other)).await,
        "a different client cert must be refused"
    );
    let ch = connect(&info, Some(&id)).await.unwrap();
    shutdown(ch).await;
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn plaintext_without_plugin_client_cert() {
    let (info, task, _p) = start_running(ServeOptions::in_process(LaunchEnv::for_host(None))).await;
    assert!(info.server_cert_der.is_none());
    assert!(info.line().ends_with("|grpc|"), "{}", info.line());
    let ch = connect(&info, None).await.unwrap();
    assert!(get_metadata(ch.clone()).await.is_ok());
    shutdown(ch).await;
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn tcp_fallback_honours_port_range_with_mtls() {
    // Find a free ephemeral port, release it, and ask for exactly that one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = ClientIdentity::generate().unwrap();
    let mut opts = mtls_opts(&id);
    opts.transport = Transport::Tcp;
    opts.env.min_port = Some(port.to_string());
    opts.env.max_port = Some(port.to_string());
    let (info, task, _p) = start_running(opts).await;
    assert_eq!(
        info.addr,
        ListenAddr::Tcp(format!("127.0.0.1:{port}").parse().unwrap())
    );
    assert!(info
        .line()
        .starts_with(&format!("1|6|tcp|127.0.0.1:{port}|grpc|")));
    assert!(refused(&info, None).await);
    let ch = connect(&info, Some(&id)).await.unwrap();
    assert!(get_metadata(ch.clone()).await.is_ok());
    shutdown(ch).await;
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn stdio_streams_attached_stdout_once() {
    use tokio::io::AsyncWriteExt as _;
    let id = ClientIdentity::generate().unwrap();
    let (server, _p) = start(mtls_opts(&id)).await;
    let (mut writer, reader) = tokio::io::duplex(1024);
    server.attach_stdout(reader);
    let info = server.handshake().clone();
    let task = tokio::spawn(server.run());
    let ch = connect(&info, Some(&id)).await.unwrap();

    writer.write_all(b"hello from the plugin\n").await.unwrap();
    let mut stream = GrpcStdioClient::new(ch.clone())
        .stream_stdio(())
        .await
        .unwrap()
        .into_inner();
    let chunk = tokio::time::timeout(GUARD, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(chunk.channel, stdio_data::Channel::Stdout as i32);
    assert_eq!(chunk.data, b"hello from the plugin\n");

    // Only one consumer may take the stream.
    let second = GrpcStdioClient::new(ch.clone()).stream_stdio(()).await;
    assert_eq!(second.unwrap_err().code(), tonic::Code::FailedPrecondition);

    shutdown(ch).await;
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The stream ends with the server.
    let end = tokio::time::timeout(GUARD, stream.message()).await.unwrap();
    assert!(!matches!(end, Ok(Some(_))));
}

#[tokio::test]
async fn broker_stream_stays_open_until_shutdown_and_health_is_serving() {
    let id = ClientIdentity::generate().unwrap();
    let (info, task, p) = start_running(mtls_opts(&id)).await;
    let ch = connect(&info, Some(&id)).await.unwrap();

    let health = HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: "plugin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut broker = GrpcBrokerClient::new(ch.clone())
        .start_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("StartStream accepted")
        .into_inner();
    tx.send(ConnInfo {
        service_id: 1,
        network: "unix".into(),
        address: "/nonexistent".into(),
        knock: Some(Knock::default()),
    })
    .await
    .unwrap();
    // Still open: nothing arrives and the stream has not ended.
    let pending =
        tokio::time::timeout(std::time::Duration::from_millis(300), broker.message()).await;
    assert!(
        pending.is_err(),
        "broker stream must stay open: {pending:?}"
    );

    // StopProvider reaches the provider.
    ProviderClient::new(ch.clone())
        .stop_provider(stop_provider::Request {})
        .await
        .unwrap();
    assert!(p.stopped.load(Ordering::SeqCst));

    shutdown(ch).await;
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let end = tokio::time::timeout(GUARD, broker.message()).await.unwrap();
    assert!(
        !matches!(end, Ok(Some(_))),
        "broker stream ends at shutdown"
    );
}

#[tokio::test]
async fn shutdown_signal_from_the_embedder_stops_the_server() {
    let (server, _p) = start(ServeOptions::in_process(LaunchEnv::for_host(None))).await;
    let signal = server.shutdown_signal();
    let task = tokio::spawn(server.run());
    signal.cancel();
    tokio::time::timeout(GUARD, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn bind_refuses_bad_launch_environment() {
    let p = provider::EchoProvider::default();
    let err = PluginServer::bind(p.clone(), ServeOptions::in_process(LaunchEnv::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, ServeError::Handshake(_)), "{err}");
    let mut env = LaunchEnv::for_host(None);
    env.protocol_versions = Some("5".into());
    let err = PluginServer::bind(p.clone(), ServeOptions::in_process(env))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("OpenTofu >= 1.6"), "{err}");
    let bad_cert = LaunchEnv::for_host(Some("garbage".into()));
    let err = PluginServer::bind(p, ServeOptions::in_process(bad_cert))
        .await
        .unwrap_err();
    assert!(matches!(err, ServeError::Tls(_)), "{err}");
}
