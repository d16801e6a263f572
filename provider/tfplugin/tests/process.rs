//! The echo plugin binary run as OpenTofu/Terraform run providers: real
//! environment, handshake line on stdout, go-hclog JSON on stderr, GRPCStdio
//! mirroring of the process' fd 1, and exit on GRPCController.Shutdown.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{get_metadata, shutdown, GUARD};
use waddle_tfplugin::client::{connect, ClientIdentity};
use waddle_tfplugin::handshake::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use waddle_tfplugin::plugin::grpc_stdio_client::GrpcStdioClient;
use waddle_tfplugin::plugin::stdio_data;
use waddle_tfplugin::tfplugin6::configure_provider;
use waddle_tfplugin::tfplugin6::provider_client::ProviderClient;
use waddle_tfplugin::{HandshakeInfo, ListenAddr};

const BIN: &str = env!("CARGO_BIN_EXE_waddle-tfplugin-echo");

fn plugin_command() -> Command {
    let mut c = Command::new(BIN);
    for k in [
        MAGIC_COOKIE_KEY,
        "PLUGIN_PROTOCOL_VERSIONS",
        "PLUGIN_CLIENT_CERT",
        "PLUGIN_MIN_PORT",
        "PLUGIN_MAX_PORT",
        "PLUGIN_UNIX_SOCKET_DIR",
        "TF_LOG",
        "TF_LOG_PROVIDER",
    ] {
        c.env_remove(k);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn run_by_a_human_it_explains_itself_and_fails() {
    let out = plugin_command().output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no handshake line for a human");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a plugin for OpenTofu/Terraform"), "{err}");
    assert!(err.contains("not meant to be run directly"), "{err}");
}

#[test]
fn host_without_protocol_6_gets_minimum_versions() {
    let out = plugin_command()
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "4,5")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OpenTofu >= 1.6"), "{err}");
    assert!(err.contains("Terraform >= 1.0"), "{err}");
}

/// Reads stderr on a thread, as the host does (a full pipe would block the plugin).
fn drain_stderr(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    })
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > GUARD {
            let _ = child.kill();
            panic!("plugin did not exit after Shutdown");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_like_the_cli() {
    let id = ClientIdentity::generate().unwrap();
    let mut child = plugin_command()
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("PLUGIN_CLIENT_CERT", id.cert_pem())
        .env("TF_LOG", "TRACE")
        .spawn()
        .unwrap();
    let stderr_reader = drain_stderr(&mut child);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.ends_with('\n'));
    let info = HandshakeInfo::parse(&line).expect("handshake line");
    assert_eq!(info.protocol_version, 6);
    assert!(info.server_cert_der.is_some());
    let ListenAddr::Unix(sock) = info.addr.clone() else {
        panic!("expected unix socket: {line}")
    };
    let dir = sock.parent().unwrap().to_path_buf();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let ch = connect(&info, Some(&id)).await.unwrap();
    let mut stdio = GrpcStdioClient::new(ch.clone())
        .stream_stdio(())
        .await
        .unwrap()
        .into_inner();
    assert!(get_metadata(ch.clone()).await.is_ok());

    // The provider println!s on ConfigureProvider: it must arrive over
    // GRPCStdio, not on the process' stdout.
    ProviderClient::new(ch.clone())
        .configure_provider(configure_provider::Request {
            terraform_version: "1.0.3".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let chunk = tokio::time::timeout(GUARD, stdio.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(chunk.channel, stdio_data::Channel::Stdout as i32);
    assert_eq!(
        String::from_utf8_lossy(&chunk.data),
        "echo-provider: configured by 1.0.3\n"
    );

    shutdown(ch).await;
    let status = tokio::task::block_in_place(|| wait_exit(&mut child));
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "socket directory removed");

    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "nothing but the handshake on the real stdout");

    let stderr = stderr_reader.join().unwrap();
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let configured = logs
        .iter()
        .find(|l| l["@message"] == "echo provider configured")
        .unwrap_or_else(|| panic!("no log line in {stderr}"));
    assert_eq!(configured["@level"], "info");
    assert_eq!(configured["@module"], "provider.waddle-tfplugin-echo");
    assert_eq!(configured["terraform_version"], "1.0.3");
}

#[test]
fn logs_are_off_without_tf_log() {
    let mut child = plugin_command()
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "6")
        .spawn()
        .unwrap();
    let stderr_reader = drain_stderr(&mut child);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let info = HandshakeInfo::parse(&line).unwrap();
    assert!(
        info.line().ends_with("|grpc|"),
        "plaintext without a client cert"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ch = connect(&info, None).await.unwrap();
        shutdown(ch).await;
    });
    assert!(wait_exit(&mut child).success());
    assert_eq!(stderr_reader.join().unwrap(), "");
}
