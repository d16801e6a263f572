//! Bad input through the real CLI: refused at validate/plan with the element named in the
//! message (Terraform shows a nested attribute's diagnostic only at the resource line), and
//! no Proxmox API request made. Plus the modules' node default: the provider's node, on an
//! emulator whose node is not called `pve`.
//!
//! PVE emulator on 127.40.60.1 / 127.40.61.1. In Real mode (`PveTarget::Real`) the
//! request-log checks are skipped with a notice; the messages are checked all the same.

use std::net::Ipv4Addr;
use std::sync::Arc;

use waddle_acceptance::harness::emulated::runtime;
use waddle_acceptance::harness::target::PveTarget;
use waddle_acceptance::harness::{self, Phase, TestCase, TestStep, PROVIDER_FROM_ENV};
use waddle_acceptance::pve::{EmulatorConfig, PveEmulator};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleAcceptanceTestKeyNotARealOne0 test";
const URL: &str = "https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.12.11/nocloud-amd64.qcow2";

fn case(t: &PveTarget) -> TestCase {
    let mut c = TestCase::new();
    for (k, v) in t.cli_env() {
        c = c.env(k, v);
    }
    c
}

/// A regex matching `phrase` even where Terraform wrapped it over lines (`\n│ `).
fn wrapped(phrase: &str) -> String {
    phrase
        .split_whitespace()
        .map(regex_escape)
        .collect::<Vec<_>>()
        .join(r"[\s│]+")
}

fn regex_escape(word: &str) -> String {
    word.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ' ' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// A step that must fail at validate or plan with `message`.
fn refused(hcl: String, what: &str, message: &str) -> TestStep {
    TestStep::config(hcl)
        .describe(what)
        .expect_error(&wrapped(message))
        .expect_error_in(&[Phase::Validate, Phase::Plan])
}

/// A target (the emulator on `ip`, or a real PVE) and the emulator whose request log proves
/// that `test` made no API call (`None`, with a notice, on a real PVE).
fn counted(
    ip: Ipv4Addr,
    test: &str,
) -> (tokio::runtime::Runtime, PveTarget, Option<Arc<PveEmulator>>) {
    let rt = runtime();
    let target = PveTarget::select(&rt, EmulatorConfig::builder().ip(ip).build());
    let emu = target
        .emulator_only(
            &format!("{test}: no API request made"),
            "counts requests in the emulator's request log",
        )
        .and_then(|_| target.emulator_arc());
    (rt, target, emu)
}

/// The emulator's request log must be empty (no API call); skipped on a real PVE.
fn no_api_call(emu: Option<Arc<PveEmulator>>) -> impl Fn(&harness::State) -> Result<(), String> {
    move |_| {
        let Some(emu) = &emu else { return Ok(()) };
        let log = emu.request_log();
        if log.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} Proxmox API requests were made: {:?}",
                log.len(),
                log.iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect::<Vec<_>>()
            ))
        }
    }
}

const PROVIDER: &str = PROVIDER_FROM_ENV;

/// A `waddle_sni_proxy` with the given NICs, routes and http_backend.
fn proxy(public: &str, gateway: &str, private: &str, routes: &str, http: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "waddle_sni_proxy" "edge" {{
  public_nic = {{
    bridge  = "vmbr0"
    cidr    = "{public}"
    gateway = "{gateway}"
  }}
  private_nic = {{
    bridge = "vmbr1"
    cidr   = "{private}"
  }}
  ssh_authorized_keys = ["{KEY}"]
  routes              = [{routes}]
  http_backend        = "{http}"
}}
"#
    )
}

fn route(host: &str, backend: &str) -> String {
    format!(r#"{{ hostnames = ["{host}"], backend = "{backend}" }}"#)
}

#[test]
fn bad_sni_proxy_input_is_refused_at_plan_naming_the_element() {
    let (_rt, target, emu) = counted(
        Ipv4Addr::new(127, 40, 60, 1),
        "bad_sni_proxy_input_is_refused_at_plan_naming_the_element",
    );
    let routes = [
        route("teleport.example.org", "10.10.0.2:3080"),
        route("*.apps.example.org", "10.10.0.20:443"),
    ]
    .join(", ");
    let ok = |f: &dyn Fn(&str) -> String| f(&routes);
    case(&target)
        .step(refused(
            ok(&|r| proxy("203.0.113.10/24", "198.51.100.1", "10.10.0.3/24", r, "10.10.0.20:80")),
            "public gateway outside the public subnet",
            "public_nic.gateway: gateway 198.51.100.1 is outside the subnet 203.0.113.0/24",
        ))
        .step(refused(
            ok(&|r| proxy("203.0.113.10/24", "203.0.113.10", "10.10.0.3/24", r, "10.10.0.20:80")),
            "public gateway equal to the proxy's address",
            "public_nic.gateway: gateway 203.0.113.10 is the NIC's own address",
        ))
        .step(refused(
            ok(&|r| proxy("203.0.113.0/24", "203.0.113.1", "10.10.0.3/24", r, "10.10.0.20:80")),
            "public address is the network address",
            "public_nic.cidr: 203.0.113.0/24 is the network address of its subnet",
        ))
        .step(refused(
            ok(&|r| proxy("203.0.113.10/24", "203.0.113.1", "10.10.0.255/24", r, "10.10.0.20:80")),
            "private address is the broadcast address",
            "private_nic.cidr: 10.10.0.255/24 is the broadcast address of its subnet",
        ))
        .step(refused(
            ok(&|r| proxy("203.0.113.10/24", "203.0.113.1", "203.0.113.20/24", r, "10.10.0.20:80")),
            "private NIC inside the public subnet",
            "private_nic.cidr: 203.0.113.20/24 lies inside the public subnet 203.0.113.0/24",
        ))
        .step(refused(
            proxy(
                "203.0.113.10/24",
                "203.0.113.1",
                "10.10.0.3/24",
                &[route("a.example.org", "10.10.0.2:3080"), route("b.example.org", "10.10.0.3:443")].join(", "),
                "10.10.0.20:80",
            ),
            "a backend that loops into the proxy",
            "routes[1].backend: backend `10.10.0.3:443` is the proxy's own address (private_nic.cidr)",
        ))
        .step(refused(
            ok(&|r| proxy("203.0.113.10/24", "203.0.113.1", "10.10.0.3/24", r, "0.0.0.0:80")),
            "a backend at the unspecified address",
            "backend `0.0.0.0:80`: the unspecified address is not a destination",
        ))
        .step(refused(
            proxy(
                "203.0.113.10/24",
                "203.0.113.1",
                "10.10.0.3/24",
                &route("a.example.org", "10.10.0.256:3080"),
                "10.10.0.20:80",
            ),
            "a mistyped IP backend",
            "routes[0].backend: backend `10.10.0.256:3080`: `10.10.0.256` is not a valid IPv4 address",
        ))
        .step(refused(
            proxy("203.0.113.10/24", "203.0.113.1", "10.10.0.3/24", "", "10.10.0.20:80"),
            "no routes at all (Terraform 1.0.3 used to report an invalid plan)",
            "at least one route is required",
        ))
        .check_destroy(no_api_call(emu))
        .run();
}

/// A `waddle_teleport_node` with `f` applied to its attribute lines.
fn teleport(f: impl Fn(&str) -> String) -> String {
    let body = format!(
        r#"  private_nic         = {{ bridge = "vmbr1" }}
  ssh_authorized_keys = ["{KEY}"]
  domain              = "example.org"
  github = {{
    client_id      = "Iv1.0123456789abcdef"
    teams_to_roles = [{{ organization = "example-org", team = "admins", roles = ["access"] }}]
  }}
  github_client_secret = "0123456789abcdef0123456789abcdef01234567"
  apps = [{{ name = "talos", uri = "tcp://10.10.0.10:50000" }}]
"#
    );
    format!(
        "{PROVIDER}\nresource \"waddle_teleport_node\" \"access\" {{\n{}}}\n",
        f(&body)
    )
}

#[test]
fn bad_teleport_node_input_is_refused_at_plan_naming_the_attribute() {
    let (_rt, target, emu) = counted(
        Ipv4Addr::new(127, 40, 60, 2),
        "bad_teleport_node_input_is_refused_at_plan_naming_the_attribute",
    );
    let add = |extra: &'static str| move |b: &str| format!("{b}  {extra}\n");
    case(&target)
        .step(refused(
            teleport(add(r#"cluster_name = "bad name!""#)),
            "an invalid cluster name",
            r#""bad name!" is not a valid cluster name"#,
        ))
        .step(refused(
            teleport(add(r#"public_addr = "https://teleport.example.org""#)),
            "an invalid public address",
            "the public address \"https://teleport.example.org\" must be a host name without scheme or port",
        ))
        .step(refused(
            teleport(|b| b.replace(r#"[{ organization = "example-org", team = "admins", roles = ["access"] }]"#, "[]")),
            "a GitHub org without any team mapping",
            "github.teams_to_roles: a GitHub connector needs at least one `teams_to_roles` entry",
        ))
        .step(refused(
            teleport(|b| b.replace("tcp://10.10.0.10:50000", "ftp://10.10.0.10")),
            "an app URI that is not http(s) or tcp",
            "apps[0].uri: app URI \"ftp://10.10.0.10\" must be `http://`, `https://` or `tcp://",
        ))
        .step(refused(
            teleport(|b| b.replace(r#"apps = [{ name = "talos", uri = "tcp://10.10.0.10:50000" }]"#, r#"apps = [{ name = "talos", uri = "tcp://10.10.0.10:50000" }, { name = "talos", uri = "https://10.10.0.11" }]"#)),
            "duplicate app names",
            "apps[1].name: app name \"talos\" is used twice (first at apps[0])",
        ))
        .step(refused(
            teleport(|b| b.replace(r#"uri = "tcp://10.10.0.10:50000" }"#, r#"uri = "https://10.10.0.10", public_addr = "talos.elsewhere.org" }"#)),
            "an app public address outside the platform domain",
            "apps[0].public_addr: app public address \"talos.elsewhere.org\" is outside the platform domain \"example.org\"",
        ))
        .step(refused(
            teleport(add(r#"sni_routes = [{ hostnames = ["teleport.example.org"], backend = "10.10.0.2:3080", proxy_protocol = true }]"#)),
            "Teleport and the SNI proxy disagree on PROXY protocol",
            "sni_routes[0] sends a PROXY v2 header to this node (10.10.0.2:3080) but proxy_protocol is false",
        ))
        .check_destroy(no_api_call(emu))
        .run();
}

/// A one-node `waddle_talos_cluster` with `extra` inside the node.
fn cluster(extra: &str) -> String {
    format!(
        r#"{PROVIDER}
resource "waddle_talos_cluster" "this" {{
  cluster_name = "bad"
  endpoint     = "https://10.10.0.20:6443"
  vip          = "10.10.0.20"
  image = {{
    disk_image_url = "{URL}"
  }}
  nodes = {{
    cp1 = {{
      role    = "controlplane"
      address = "10.10.0.10/24"
      {extra}
    }}
  }}
}}
"#
    )
}

#[test]
fn bad_talos_cluster_input_is_refused_at_plan_naming_the_node() {
    let (_rt, target, emu) = counted(
        Ipv4Addr::new(127, 40, 61, 1),
        "bad_talos_cluster_input_is_refused_at_plan_naming_the_node",
    );
    case(&target)
        .step(refused(
            cluster(r#"gateway = "10.20.0.1"
      proxmox = {}"#),
            "gateway outside the node's subnet",
            r#"nodes["cp1"].gateway: gateway 10.20.0.1 is outside the node's subnet"#,
        ))
        .step(refused(
            cluster(r#"gateway = "10.10.0.1"
      proxmox = { node = "pve_1" }"#),
            "an invalid Proxmox node name",
            r#"nodes["cp1"].proxmox.node: "pve_1" is not a valid node name"#,
        ))
        .step(refused(
            cluster(r#"gateway = "10.10.0.1"
      proxmox = {}
      config_patches = [yamlencode({ cluster = { network = { podSubnets = ["10.244.0.0/33"] } } })]"#),
            "an invalid podSubnets patch",
            r#"nodes["cp1"].config_patches[0]: config patch breaks the machine configuration: v1alpha1: cluster.network.podSubnets[0]: "10.244.0.0/33" is not a valid subnet"#,
        ))
        .check_destroy(no_api_call(emu))
        .run();
}

/// The modules default the Proxmox node to the provider's node (`PROXMOX_VE_NODE` here) and
/// pass per-node patches and labels; a per-node setting for no node fails the plan.
#[test]
fn modules_take_the_provider_node_and_expose_per_node_settings() {
    let rt = runtime();
    let target = PveTarget::select(
        &rt,
        EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, 62, 1))
            .nodes(&["edge-7"])
            .bridge("vmbr1")
            .build(),
    );
    let node = target.node();
    let with = |mut s: TestStep, module: &str| {
        for (name, content) in harness::module_files(module) {
            s = s.file(name, content);
        }
        s
    };
    let proxy = format!(
        r#"{PROVIDER}
module "sni_proxy" {{
  source          = "./modules/haproxy"
  domain          = "example.org"
  public_cidr     = "203.0.113.10/24"
  public_gateway  = "203.0.113.1"
  ssh_public_keys = ["{KEY}"]
}}
"#
    );
    let talos = |extra: &str| {
        format!(
            r#"{PROVIDER}
module "cluster" {{
  source                  = "./modules/talos-cluster"
  control_plane_addresses = ["10.10.0.10"]
  {extra}
}}
"#
        )
    };
    let labels = r#"node_labels         = { cp1 = { "topology.kubernetes.io/zone" = "rack-2" } }
  node_config_patches = { cp1 = [yamlencode({ machine = { sysctls = { "vm.max_map_count" = "262144" } } })] }"#;
    let node2 = node.clone();
    case(&target)
        .step(
            with(TestStep::config(proxy), "haproxy")
                .describe("haproxy module without node: the provider's node")
                .plan_only()
                .expect_non_empty_plan()
                .plan_check(Box::new(move |p| {
                    let rc = p
                        .resource_changes()
                        .into_iter()
                        .find(|rc| rc.address == "module.sni_proxy.waddle_sni_proxy.this")
                        .ok_or("no sni proxy in the plan")?;
                    match rc.after.get("node").and_then(|v| v.as_str()) {
                        Some(n) if n == node2 => Ok(()),
                        other => Err(format!("planned node {other:?}, expected {node2:?}")),
                    }
                })),
        )
        .step(
            with(TestStep::config(talos(labels)), "talos-cluster")
                .describe("talos-cluster module: provider's node, per-node labels and patches")
                .plan_only()
                .expect_non_empty_plan()
                .plan_check(Box::new(move |p| {
                    let rc = p
                        .resource_changes()
                        .into_iter()
                        .find(|rc| rc.address == "module.cluster.waddle_talos_cluster.this")
                        .ok_or("no cluster in the plan")?;
                    let cp1 = &rc.after["nodes"]["cp1"];
                    let node = &cp1["proxmox"]["node"];
                    if !node.is_null() {
                        return Err(format!(
                            "proxmox.node {node} (expected null: the provider's node)"
                        ));
                    }
                    if cp1["node_labels"]["topology.kubernetes.io/zone"] != "rack-2" {
                        return Err(format!("node_labels {}", cp1["node_labels"]));
                    }
                    let patches = cp1["config_patches"].as_array().map(Vec::len);
                    if patches != Some(1) {
                        return Err(format!("config_patches {}", cp1["config_patches"]));
                    }
                    Ok(())
                })),
        )
        .step(
            with(
                TestStep::config(talos(r#"node_labels = { cp9 = { a = "b" } }"#)),
                "talos-cluster",
            )
            .describe("a per-node setting for no node")
            .expect_error(&wrapped(
                "node_config_patches / node_labels name no node of this cluster",
            ))
            .expect_error_in(&[Phase::Validate, Phase::Plan]),
        )
        .run();
}
