//! Plugin benchmark (issue 2, section 6). Not a test: it prints figures.
//!
//! `cargo bench -p waddle-tfplugin --bench plugin`
//!
//! The binary measured is `$WADDLE_PROVIDER_BIN`, else
//! `target/release/terraform-provider-waddle` if it exists, else this crate's
//! `waddle-tfplugin-echo` (built by cargo for the bench). It is launched like
//! OpenTofu/Terraform launch providers: magic cookie, `PLUGIN_PROTOCOL_VERSIONS`
//! and AutoMTLS with a fresh self-signed P-521 client certificate.
//!
//! Figures: exec-to-handshake median (process spawn until the handshake line is
//! read), provider peak RSS (VmHWM after a few RPCs), GetMetadata round trip
//! over the real unix socket with mTLS (median of 1000), binary size (stripped).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use waddle_tfplugin::client::{connect, ClientIdentity};
use waddle_tfplugin::handshake::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use waddle_tfplugin::plugin::grpc_controller_client::GrpcControllerClient;
use waddle_tfplugin::plugin::Empty;
use waddle_tfplugin::tfplugin6::provider_client::ProviderClient;
use waddle_tfplugin::tfplugin6::{get_metadata, get_provider_schema};
use waddle_tfplugin::HandshakeInfo;

const HANDSHAKE_RUNS: usize = 25;
const RPC_CALLS: usize = 1000;

fn provider_bin() -> PathBuf {
    // cargo runs benches from the package directory; resolve relative paths
    // against the workspace root instead.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Some(p) = std::env::var_os("WADDLE_PROVIDER_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_absolute() { p } else { root.join(p) };
    }
    let waddle = root.join("target/release/terraform-provider-waddle");
    if waddle.exists() {
        return waddle;
    }
    PathBuf::from(env!("CARGO_BIN_EXE_waddle-tfplugin-echo"))
}

fn spawn(bin: &Path, client_cert_pem: &str) -> (Child, HandshakeInfo, Duration) {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("PLUGIN_CLIENT_CERT", client_cert_pem)
        .env_remove("TF_LOG")
        .env_remove("TF_LOG_PROVIDER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn provider");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("handshake line");
    let elapsed = start.elapsed();
    let info = HandshakeInfo::parse(&line).expect("valid handshake line");
    (child, info, elapsed)
}

fn stop(mut child: Child) {
    // SIGTERM: the plugin shuts down cleanly and removes its socket dir.
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own, not yet reaped, child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = child.wait();
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx]
}

/// A `/proc/PID/status` field in KiB (e.g. `VmHWM`, `RssAnon`, `RssFile`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.split(':').next() == Some(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn stripped_size(bin: &Path) -> (u64, u64) {
    let raw = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let tmp = std::env::temp_dir().join(format!("waddle-bench-strip-{}", std::process::id()));
    let stripped = std::fs::copy(bin, &tmp)
        .ok()
        .and_then(|_| Command::new("strip").arg(&tmp).status().ok())
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&tmp).ok())
        .map(|m| m.len())
        .unwrap_or(raw);
    let _ = std::fs::remove_file(&tmp);
    (raw, stripped)
}

fn main() {
    // `cargo bench` passes `--bench`; any filter argument is ignored.
    let bin = provider_bin();
    println!("provider binary: {}", bin.display());
    let id = ClientIdentity::generate().expect("client identity");
    let pem = id.cert_pem();

    // 1. exec-to-handshake.
    let mut times = Vec::with_capacity(HANDSHAKE_RUNS);
    for _ in 0..HANDSHAKE_RUNS {
        let (child, _info, t) = spawn(&bin, &pem);
        times.push(t);
        stop(child);
    }
    let hs = median(&mut times);

    // 2 + 3. RSS and per-RPC round trip on one plugin process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut child, info, _) = spawn(&bin, &pem);
    let pid = child.id();
    let (rpc, hwm) = rt.block_on(async {
        let ch = connect(&info, Some(&id)).await.expect("mTLS connect");
        let mut client = ProviderClient::new(ch.clone());
        for _ in 0..3 {
            client
                .get_provider_schema(get_provider_schema::Request {})
                .await
                .expect("GetProviderSchema");
        }
        // Warm-up.
        for _ in 0..50 {
            client
                .get_metadata(get_metadata::Request {})
                .await
                .expect("GetMetadata");
        }
        let mut rpc = Vec::with_capacity(RPC_CALLS);
        for _ in 0..RPC_CALLS {
            let t = Instant::now();
            client
                .get_metadata(get_metadata::Request {})
                .await
                .expect("GetMetadata");
            rpc.push(t.elapsed());
        }
        let hwm = ["VmHWM", "RssAnon", "RssFile"].map(|f| status_kib(pid, f));
        GrpcControllerClient::new(ch)
            .shutdown(Empty {})
            .await
            .expect("Shutdown");
        (rpc, hwm)
    });
    let status = child.wait().expect("wait");
    let mut rpc = rpc;
    let rpc_median = median(&mut rpc);
    let (raw, stripped) = stripped_size(&bin);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!();
    println!(
        "exec-to-handshake (median of {HANDSHAKE_RUNS}, mTLS): {:.2} ms  [min {:.2}, max {:.2}]  target <= 3 ms",
        ms(hs),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    match hwm {
        [Some(k), anon, file] => println!(
            "provider peak RSS (VmHWM after schema + {} RPCs): {:.2} MiB  target <= 8 MB  \
             [now: anon {:.2} MiB, file-backed {:.2} MiB]",
            RPC_CALLS + 53,
            k as f64 / 1024.0,
            anon.unwrap_or(0) as f64 / 1024.0,
            file.unwrap_or(0) as f64 / 1024.0,
        ),
        _ => println!("provider peak RSS: unavailable (no /proc)"),
    }
    println!(
        "GetMetadata round trip over unix socket + mTLS (median of {RPC_CALLS}): {:.3} ms  [p90 {:.3}, p99 {:.3}]  target <= 2 ms",
        ms(rpc_median),
        ms(percentile(&rpc, 0.90)),
        ms(percentile(&rpc, 0.99))
    );
    println!(
        "binary size: {:.2} MiB stripped ({:.2} MiB as built)  target <= 15 MB",
        mib(stripped),
        mib(raw)
    );
    println!("plugin exit after Shutdown: {status}");
}
