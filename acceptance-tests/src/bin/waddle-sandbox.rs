//! `waddle-sandbox`: run the Proxmox VE emulator on loopback for local `tofu apply`s.
//!
//! ```text
//! waddle-sandbox --env-file .sandbox.env [--listen 127.10.0.1:0] [--seed N]
//!                [--fault 'POST /nodes/{node}/qemu=lock-timeout@0.2']... [--node pve]...
//!                [--boot-ms 2000] [--token-secret S] [--dhcp-bridge vmbr1]...
//! ```
//! No bridge has DHCP unless `--dhcp-bridge` says so (a bridge with a DHCP server outside
//! Proxmox); SDN vnets have DHCP when their zone runs it and their subnet has a `dhcp-range`.
//! A Talos VM without either gets its address only from its NoCloud network configuration.
//! Guests that boot a Talos image run the Talos emulator (`waddle_acceptance::talos`); other
//! images run the Debian appliance. Once ready it writes `PROXMOX_VE_ENDPOINT`, `PROXMOX_VE_API_TOKEN`, `PROXMOX_VE_CA_CERT`
//! (a PEM file written next to the env file) and `PROXMOX_VE_NODE` to the env file, then
//! serves until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use waddle_acceptance::pve::{
    EmulatorConfig, FaultConfig, FaultRule, PveEmulator, Timings, TokenSpec,
};
use waddle_acceptance::talos::{FleetOptions, TalosFleet};

struct Args {
    env_file: Option<PathBuf>,
    listen: SocketAddr,
    seed: u64,
    faults: Vec<FaultRule>,
    nodes: Vec<String>,
    boot_ms: Option<u64>,
    token_secret: Option<String>,
    dhcp_bridges: Vec<String>,
}

const USAGE: &str = "usage: waddle-sandbox --env-file PATH [--listen IP:PORT] [--seed N] [--fault 'METHOD /path=KIND@P']... [--node NAME]... [--boot-ms MS] [--token-secret SECRET] [--dhcp-bridge BRIDGE]...";

/// `--help`: what the sandbox is, every option and the env file it writes.
const HELP: &str = "\
waddle-sandbox: an emulated Proxmox VE 9 API, and the Talos nodes its VMs boot, on loopback
addresses only, for `tofu apply`s and the acceptance tests. Serves until SIGINT or SIGTERM.

usage: waddle-sandbox --env-file PATH [options]

options:
  --env-file PATH        once ready, write PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN,
                         PROXMOX_VE_CA_CERT (a PEM file written next to PATH, named
                         <file name>.ca.pem) and PROXMOX_VE_NODE to PATH; load it with
                         `set -a; . PATH; set +a`
  --listen IP:PORT       API address, a 127.0.0.0/8 address (default 127.10.0.1:0: any free port)
  --node NAME            a cluster node; repeat for more (default: one node, pve)
  --boot-ms MS           time from a VM's start until its guest answers (default 500)
  --token-secret SECRET  secret of the root@pam!waddle API token (default: random)
  --dhcp-bridge BRIDGE   a bridge with a DHCP server outside Proxmox; repeat for more
                         (default: none; SDN vnets have DHCP when their subnet has a dhcp-range)
  --fault RULE           inject a fault: 'METHOD /api/path/template=KIND@PROBABILITY', e.g.
                         'POST /nodes/{node}/qemu=lock-timeout@0.2' or '*=latency:50@1'; KIND is
                         lock-timeout, no-worker-upid, drop, drop-response, latency:MS,
                         fail-task:MSG, slow-boot:MS or error:STATUS:REASON; repeat for more
  --seed N               seed of the fault dice (default 0)
  -h, --help             this text

Guests booting a Talos image run the Talos emulator (one 127.20.x.y address per node); other
images run a Debian guest that applies its NoCloud seed.

example:
  waddle-sandbox --env-file .sandbox.env &
  set -a; . .sandbox.env; set +a; export PROXMOX_VE_CA_CERT=\"$(cat \"$PROXMOX_VE_CA_CERT\")\"
  tofu apply
";

/// What the command line asks for.
enum Command {
    Serve(Args),
    Help,
}

fn parse_args() -> Result<Command, String> {
    let mut a = Args {
        env_file: None,
        listen: "127.10.0.1:0".parse().map_err(|e| format!("{e}"))?,
        seed: 0,
        faults: Vec::new(),
        nodes: Vec::new(),
        boot_ms: None,
        token_secret: None,
        dhcp_bridges: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut val = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--env-file" => a.env_file = Some(PathBuf::from(val("--env-file")?)),
            "--listen" => {
                a.listen = val("--listen")?
                    .parse()
                    .map_err(|e| format!("--listen: {e}"))?
            }
            "--seed" => a.seed = val("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--fault" => a.faults.push(FaultRule::parse(&val("--fault")?)?),
            "--node" => a.nodes.push(val("--node")?),
            "--boot-ms" => {
                a.boot_ms = Some(
                    val("--boot-ms")?
                        .parse()
                        .map_err(|e| format!("--boot-ms: {e}"))?,
                )
            }
            "--token-secret" => a.token_secret = Some(val("--token-secret")?),
            "--dhcp-bridge" => a.dhcp_bridges.push(val("--dhcp-bridge")?),
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    Ok(Command::Serve(a))
}

fn write_atomic(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-waddle");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(Command::Serve(a)) => a,
        Ok(Command::Help) => {
            print!("{HELP}");
            return;
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let secret = args
        .token_secret
        .clone()
        .unwrap_or_else(waddle_acceptance::pve::random_token_value);
    let mut timings = Timings::default();
    if let Some(ms) = args.boot_ms {
        timings.boot = Duration::from_millis(ms);
    }
    let mut builder = EmulatorConfig::builder()
        .listen(args.listen)
        .tokens(vec![TokenSpec::full("root@pam", "waddle", &secret)])
        .timings(timings)
        .faults(FaultConfig {
            seed: args.seed,
            rules: args.faults.clone(),
        });
    for b in &args.dhcp_bridges {
        builder = builder.dhcp_bridge(b);
    }
    if !args.nodes.is_empty() {
        let nodes: Vec<&str> = args.nodes.iter().map(String::as_str).collect();
        builder = builder.nodes(&nodes);
    }
    let emu = match PveEmulator::start(builder.build()).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("waddle-sandbox: {e}");
            std::process::exit(1);
        }
    };
    // Guests booting a Talos image run the Talos emulator (one 127.20.x.y address per node).
    let fleet = TalosFleet::new(FleetOptions::default());
    waddle_acceptance::talos::appliance::register(emu.appliances(), fleet.clone());
    let token = emu.api_token().unwrap_or_default();
    if let Some(env) = &args.env_file {
        let dir = env
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        let ca = dir.join(format!(
            "{}.ca.pem",
            env.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("waddle-sandbox")
        ));
        if let Err(e) = write_atomic(&ca, emu.ca_pem().as_bytes()) {
            eprintln!("waddle-sandbox: writing {}: {e}", ca.display());
            std::process::exit(1);
        }
        let ca_abs = std::fs::canonicalize(&ca).unwrap_or(ca);
        let body = format!(
            "PROXMOX_VE_ENDPOINT={}\nPROXMOX_VE_API_TOKEN={}\nPROXMOX_VE_CA_CERT={}\nPROXMOX_VE_NODE={}\n",
            emu.endpoint(),
            token,
            ca_abs.display(),
            emu.node()
        );
        if let Err(e) = write_atomic(env, body.as_bytes()) {
            eprintln!("waddle-sandbox: writing {}: {e}", env.display());
            std::process::exit(1);
        }
    }
    eprintln!(
        "waddle-sandbox: Proxmox VE emulator on {} (node {}, token {}!***)",
        emu.endpoint(),
        emu.node(),
        token.split('=').next().unwrap_or("")
    );
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("waddle-sandbox: cannot install SIGTERM handler: {e}");
            std::process::exit(1);
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    emu.shutdown().await;
    fleet.shutdown().await;
    eprintln!("waddle-sandbox: stopped");
}
