//! Benchmark of a `waddle_talos_cluster` rolling Talos upgrade (v1.12.4 -> v1.12.11) for 3,
//! 10 and 30 nodes (3 control planes, the rest workers, `upgrade.parallelism` = 5) against
//! the PVE emulator with the Talos emulator as guest, driven in process (no CLI overhead).
//! Prints figures only; nothing is asserted on time.
//!
//!   cargo run --release -p waddle-acceptance --example talos_upgrade_roll
//!   (args: node counts, e.g. `-- 3 10`)
//!
//! `WADDLE_BENCH_LOG=1` prints the provider's steps (tracing `info`) to stderr.
//!
//! Emulator latencies per upgraded node: the answer grace before the node goes down
//! (500 ms), the installer (1 s), the reboot (1.5 s) and the boot sequence (500 ms). The lower
//! bound is those latencies for the control planes in sequence plus one per worker batch;
//! the ratio wall / bound shows what the orchestration (checks, polling) adds.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use waddle_acceptance::pve::{EmulatorConfig, PveEmulator, Timings as PveTimings};
use waddle_acceptance::talos::{appliance, FleetOptions, TalosFleet, Timings};
use waddle_framework::Value;
use waddle_provider::resources::talos_cluster::upgrade::UpgradeModel;
use waddle_provider::resources::talos_cluster::{
    schema, ClusterModel, ImageModel, PlacementModel, TimeoutsModel, TYPE_NAME,
};

#[allow(dead_code)] // `client` is for the tests
#[path = "../tests/inproc/mod.rs"]
mod inproc;
mod talos_bench;

use inproc::harness;

const PARALLELISM: usize = 5;
/// What the emulator's answer grace adds before a node goes down (`talos::ANSWER_GRACE`).
const GRACE: Duration = Duration::from_millis(500);

fn timings() -> Timings {
    Timings {
        boot: Duration::from_millis(200),
        apply: Duration::from_millis(50),
        reboot: Duration::from_millis(1500),
        bootstrap_ready: Duration::from_millis(200),
        rpc: Duration::ZERO,
        boot_done: Duration::from_millis(500),
        upgrade: Duration::from_millis(1000),
    }
}

fn disk_url(v: &str) -> String {
    format!("https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/{v}/nocloud-amd64.qcow2")
}

fn cluster(n: usize, run: u8, secrets: &str, version: &str) -> ClusterModel {
    let net = |host: usize| format!("127.20.{}.{}", 110 + run, host);
    let nodes = talos_bench::nodes(n, net, |i| PlacementModel {
        vmid: Some(2000 + 100 * u32::from(run) + i as u32),
        ..Default::default()
    });
    ClusterModel {
        cluster_name: format!("roll{run}"),
        endpoint: format!("https://{}:6443", net(250)),
        vip: Some(net(250)),
        talos_version: Some(version.into()),
        image: Some(ImageModel {
            installer: None,
            disk_image_url: Some(disk_url(version)),
        }),
        machine_secrets: Some(secrets.to_string()),
        timeouts: Some(TimeoutsModel {
            create: Some("5m".into()),
            update: Some("10m".into()),
            delete: Some("5m".into()),
        }),
        upgrade: Some(UpgradeModel {
            parallelism: Some(PARALLELISM as u32),
            ..Default::default()
        }),
        nodes: Some(nodes),
        ..Default::default()
    }
}

fn main() {
    let sizes = talos_bench::sizes();
    if std::env::var_os("WADDLE_BENCH_LOG").is_some() {
        // The provider's steps with their times (`info`: each wait's state changes).
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("waddle_provider=info"))
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let emu = PveEmulator::start(
            EmulatorConfig::builder()
                .ip(Ipv4Addr::new(127, 40, 110, 1))
                .timings(PveTimings::fast())
                .validate_responses(false)
                .build(),
        )
        .await
        .expect("PVE emulator");
        let fleet = TalosFleet::new(FleetOptions {
            timings: timings(),
            ..Default::default()
        });
        appliance::register(emu.appliances(), fleet.clone());
        let h = harness(&emu).await;
        let t = timings();
        let per_node = GRACE + t.upgrade + t.reboot + t.boot_done;
        let mut rows = Vec::new();
        for (run, n) in sizes.into_iter().enumerate() {
            let run = run as u8;
            let secrets = talos_bench::fresh_secrets().await;
            let old = schema()
                .from_typed(&cluster(n, run, &secrets, "v1.12.4"))
                .expect("config");
            let state = match h.plan_and_apply(TYPE_NAME, &Value::Null, &old).await {
                Ok(s) => s,
                Err(d) => panic!("create of {n} nodes failed: {d:?}"),
            };
            let new = schema()
                .from_typed(&cluster(n, run, &secrets, "v1.12.11"))
                .expect("config");
            let started = Instant::now();
            let state = match h.plan_and_apply(TYPE_NAME, &state, &new).await {
                Ok(s) => s,
                Err(d) => panic!("upgrade of {n} nodes failed: {d:?}"),
            };
            let wall = started.elapsed().as_secs_f64();
            let ended = Instant::now();
            // Where the time went, from the emulator's upgrade log: before the first call,
            // between one step's end and the next step's first call, after the last node.
            let log: Vec<_> = fleet
                .upgrade_log()
                .into_iter()
                .filter(|r| r.started >= started)
                .collect();
            let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
            if let (Some(first), Some(last)) = (
                log.iter().map(|r| r.started).min(),
                log.iter().filter_map(|r| r.finished).max(),
            ) {
                let mut gaps = Vec::new();
                let mut steps: Vec<(Instant, Instant)> = Vec::new();
                for r in &log {
                    let f = r.finished.unwrap_or(ended);
                    match steps.last_mut() {
                        Some(s) if r.started < s.1 => s.1 = s.1.max(f),
                        _ => steps.push((r.started, f)),
                    }
                }
                for w in steps.windows(2) {
                    gaps.push(secs(w[0].1, w[1].0));
                }
                let inside: f64 = steps.iter().map(|(a, b)| secs(*a, *b)).sum();
                println!(
                    "{n} nodes: before the first upgrade {:.2}s; {} steps {:.2}s (per step {:.2}s); gaps between steps {:.2}s ({}); after the last node {:.2}s",
                    secs(started, first),
                    steps.len(),
                    inside,
                    inside / steps.len() as f64,
                    gaps.iter().sum::<f64>(),
                    gaps.iter().map(|g| format!("{g:.2}")).collect::<Vec<_>>().join(" "),
                    secs(last, ended),
                );
            }
            let cps = n.min(3);
            let batches = (n - cps).div_ceil(PARALLELISM);
            let bound = per_node.as_secs_f64() * (cps + batches) as f64;
            if let Err(d) = h.plan_and_apply(TYPE_NAME, &state, &Value::Null).await {
                panic!("destroy of {n} nodes failed: {d:?}");
            }
            rows.push((n, cps, batches, wall, bound));
        }
        println!();
        println!(
            "per node: grace {:?} + installer {:?} + reboot {:?} + boot {:?}; parallelism {PARALLELISM}",
            GRACE, t.upgrade, t.reboot, t.boot_done
        );
        println!("nodes  cps  worker batches  upgrade wall  lower bound  wall/bound");
        for (n, cps, b, wall, bound) in rows {
            println!(
                "{n:>5}  {cps:>3}  {b:>14}  {wall:>11.2}s  {bound:>10.2}s  {:>9.3}x",
                wall / bound
            );
        }
        fleet.shutdown().await;
    });
}
