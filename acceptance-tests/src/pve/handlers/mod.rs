//! Endpoint behaviour: [`dispatch`] routes a request to the file of its API area, and the
//! helpers every area shares (node and VMID checks, sizes, storage lookups).

mod agent;
mod cluster;
mod network;
mod power;
mod qemu;
mod qemu_config;
mod sdn;
mod storage;
mod tasks;

use std::future::Future;
use std::pin::Pin;

use serde_json::{json, Map, Value};

use crate::pve::server::{ApiError, Ctx};
use agent::{
    agent_exec, agent_exec_status, agent_file_read, agent_file_write, agent_ifaces, agent_ready,
};
use cluster::{access_ticket, nextid, nodes_list, resources};
use network::{net_apply, net_create, net_delete, net_get, net_list, net_revert, net_update};
use power::{qemu_reboot, qemu_start, qemu_status, qemu_stop};
use qemu::{qemu_create, qemu_delete, qemu_list};
use qemu_config::{qemu_config_get, qemu_config_set, qemu_pending, qemu_resize};
use sdn::{sdn_apply, sdn_subnets, sdn_vnets, sdn_zones};
use storage::{
    content_delete, content_get, content_list, download_url, storage_list, storage_status, upload,
};
use tasks::{finish_task, task_get, task_log, task_status, tasks_list};

type R = Result<Value, ApiError>;
type BoxFut = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

pub(crate) async fn dispatch(ctx: &mut Ctx) -> R {
    let t = ctx.template.clone();
    let m = ctx.method.clone();
    match (m.as_str(), t.as_str()) {
        ("POST", "/access/ticket") => access_ticket(ctx),
        ("GET", "/access/ticket") => Ok(Value::Null),
        ("GET", "/version") => {
            Ok(json!({"version": "9.1.1", "release": "9.1", "repoid": "0a1b2c3d"}))
        }
        ("GET", "/nodes") => nodes_list(ctx),
        ("GET", "/cluster/nextid") => nextid(ctx),
        ("GET", "/cluster/resources") => resources(ctx),
        // qemu
        ("GET", "/nodes/{node}/qemu") => qemu_list(ctx),
        ("POST", "/nodes/{node}/qemu") => qemu_create(ctx).await,
        ("GET", "/nodes/{node}/qemu/{vmid}") => {
            vm_exists(ctx)?;
            Ok(
                json!([{"subdir":"config"},{"subdir":"pending"},{"subdir":"status"},{"subdir":"agent"},{"subdir":"firewall"}]),
            )
        }
        ("DELETE", "/nodes/{node}/qemu/{vmid}") => qemu_delete(ctx).await,
        ("GET", "/nodes/{node}/qemu/{vmid}/config") => qemu_config_get(ctx),
        ("PUT", "/nodes/{node}/qemu/{vmid}/config") => qemu_config_set(ctx, false).await,
        ("POST", "/nodes/{node}/qemu/{vmid}/config") => qemu_config_set(ctx, true).await,
        ("GET", "/nodes/{node}/qemu/{vmid}/pending") => qemu_pending(ctx),
        ("PUT", "/nodes/{node}/qemu/{vmid}/resize") => qemu_resize(ctx).await,
        ("GET", "/nodes/{node}/qemu/{vmid}/status") => {
            vm_exists(ctx)?;
            Ok(
                json!([{"subdir":"current"},{"subdir":"start"},{"subdir":"stop"},{"subdir":"shutdown"},{"subdir":"reboot"}]),
            )
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/status/current") => qemu_status(ctx),
        ("POST", "/nodes/{node}/qemu/{vmid}/status/start") => qemu_start(ctx).await,
        ("POST", "/nodes/{node}/qemu/{vmid}/status/stop") => qemu_stop(ctx, "qmstop").await,
        ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown") => qemu_stop(ctx, "qmshutdown").await,
        ("POST", "/nodes/{node}/qemu/{vmid}/status/reboot") => qemu_reboot(ctx).await,
        // agent
        ("POST", "/nodes/{node}/qemu/{vmid}/agent/ping") => {
            agent_ready(ctx)?;
            Ok(json!({"result": {}}))
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces") => agent_ifaces(ctx),
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/get-host-name") => {
            let (gctx, _) = agent_ready(ctx)?;
            Ok(
                json!({"result": {"host-name": gctx.name.unwrap_or_else(|| format!("vm{}", gctx.vmid))}}),
            )
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/get-osinfo") => {
            let (_, app) = agent_ready(ctx)?;
            Ok(json!({"result": {"id": app.kind(), "name": app.kind(), "kernel-release": "6.1.0"}}))
        }
        ("POST", "/nodes/{node}/qemu/{vmid}/agent/exec") => agent_exec(ctx).await,
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/exec-status") => agent_exec_status(ctx),
        ("POST", "/nodes/{node}/qemu/{vmid}/agent/file-write") => agent_file_write(ctx).await,
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/file-read") => agent_file_read(ctx).await,
        // tasks
        ("GET", "/nodes/{node}/tasks") => tasks_list(ctx),
        ("GET", "/nodes/{node}/tasks/{upid}") => {
            task_get(ctx)?;
            Ok(json!([{"name":"log"},{"name":"status"}]))
        }
        ("GET", "/nodes/{node}/tasks/{upid}/status") => task_status(ctx),
        ("GET", "/nodes/{node}/tasks/{upid}/log") => task_log(ctx),
        ("DELETE", "/nodes/{node}/tasks/{upid}") => {
            let upid = ctx.req("upid")?.to_string();
            task_get(ctx)?;
            finish_task(&ctx.shared, &upid, Err("unexpected status".into()));
            Ok(Value::Null)
        }
        // storage
        ("GET", "/nodes/{node}/storage") => storage_list(ctx),
        ("GET", "/nodes/{node}/storage/{storage}/status") => storage_status(ctx),
        ("GET", "/nodes/{node}/storage/{storage}/content") => content_list(ctx),
        ("GET", "/nodes/{node}/storage/{storage}/content/{volume}") => content_get(ctx),
        ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}") => content_delete(ctx),
        ("POST", "/nodes/{node}/storage/{storage}/download-url") => download_url(ctx),
        ("POST", "/nodes/{node}/storage/{storage}/upload") => upload(ctx),
        // network
        ("GET", "/nodes/{node}/network") => net_list(ctx),
        ("POST", "/nodes/{node}/network") => net_create(ctx),
        ("PUT", "/nodes/{node}/network") => net_apply(ctx),
        ("DELETE", "/nodes/{node}/network") => net_revert(ctx),
        ("GET", "/nodes/{node}/network/{iface}") => net_get(ctx),
        ("PUT", "/nodes/{node}/network/{iface}") => net_update(ctx),
        ("DELETE", "/nodes/{node}/network/{iface}") => net_delete(ctx),
        // sdn
        ("GET", "/cluster/sdn") => Ok(
            json!([{"id":"zones"},{"id":"vnets"},{"id":"controllers"},{"id":"ipams"},{"id":"dns"}]),
        ),
        ("PUT", "/cluster/sdn") => sdn_apply(ctx),
        (_, p) if p.starts_with("/cluster/sdn/zones") => sdn_zones(ctx),
        (_, p) if p.starts_with("/cluster/sdn/vnets/{vnet}/subnets") => sdn_subnets(ctx),
        (_, p) if p == "/cluster/sdn/vnets" || p == "/cluster/sdn/vnets/{vnet}" => sdn_vnets(ctx),
        // firewall
        (_, p)
            if p.starts_with("/cluster/firewall/")
                || p.starts_with("/nodes/{node}/firewall/")
                || p.starts_with("/nodes/{node}/qemu/{vmid}/firewall/") =>
        {
            crate::pve::firewall::dispatch(ctx)
        }
        (_, p) if p.starts_with("/access") => crate::pve::access::dispatch(ctx),
        (m, p) => Err(ApiError::new(
            501,
            format!("Method '{m} {p}' not implemented by the emulator"),
        )),
    }
}

fn node_check(ctx: &Ctx) -> Result<String, ApiError> {
    let node = ctx.req("node")?.to_string();
    if !ctx.shared.cfg.nodes.contains(&node) {
        return Err(ApiError::die(format!(
            "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
        )));
    }
    Ok(node)
}

fn vmid(ctx: &Ctx) -> Result<u32, ApiError> {
    ctx.req("vmid")?
        .parse()
        .map_err(|_| ApiError::param("vmid", "type check ('integer') failed"))
}

fn no_conf(node: &str, vmid: u32) -> ApiError {
    ApiError::die(format!(
        "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
    ))
}

fn vm_exists(ctx: &Ctx) -> Result<(String, u32), ApiError> {
    let node = node_check(ctx)?;
    let id = vmid(ctx)?;
    let st = ctx.shared.st();
    match st.vms.get(&id) {
        Some(vm) if vm.node == node => Ok((node, id)),
        _ => Err(no_conf(&node, id)),
    }
}

fn size_str(bytes: u64) -> String {
    const K: u64 = 1024;
    if bytes > 0 && bytes.is_multiple_of(K * K * K) {
        format!("{}G", bytes / (K * K * K))
    } else if bytes > 0 && bytes.is_multiple_of(K * K) {
        format!("{}M", bytes / (K * K))
    } else if bytes > 0 && bytes.is_multiple_of(K) {
        format!("{}K", bytes / K)
    } else {
        bytes.to_string()
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1024f64),
        'M' => (&s[..s.len() - 1], 1024f64 * 1024.0),
        'G' => (&s[..s.len() - 1], 1024f64 * 1024.0 * 1024.0),
        'T' => (&s[..s.len() - 1], 1024f64 * 1024.0 * 1024.0 * 1024.0),
        _ => (s, 1f64),
    };
    num.parse::<f64>().ok().map(|n| (n * mult) as u64)
}

fn is_disk_key(k: &str) -> bool {
    k == "efidisk0"
        || k == "tpmstate0"
        || ["ide", "sata", "scsi", "virtio", "unused"].iter().any(|p| {
            k.strip_prefix(p)
                .map(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
                .unwrap_or(false)
        })
}

fn is_net_key(k: &str) -> bool {
    k.strip_prefix("net")
        .map(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or(false)
}

fn prop_format(ctx: &Ctx, key: &str) -> Option<Map<String, Value>> {
    let ep = ctx.shared.schema.endpoint("POST", "/nodes/{node}/qemu")?;
    let props = ep.properties()?;
    let schema = crate::spec::lookup_prop_pub(props, key)?;
    schema.get("format").and_then(Value::as_object).cloned()
}

fn storage_of(ctx: &Ctx, id: &str, node: &str) -> Result<crate::pve::StorageSpec, ApiError> {
    ctx.shared
        .cfg
        .storages
        .iter()
        .find(|s| s.id == id && (s.nodes.is_empty() || s.nodes.iter().any(|n| n == node)))
        .cloned()
        .ok_or_else(|| ApiError::die(format!("storage '{id}' does not exist")))
}

fn require_content(s: &crate::pve::StorageSpec, content: &str) -> Result<(), ApiError> {
    if s.content.iter().any(|c| c == content) {
        Ok(())
    } else {
        Err(ApiError::die(format!(
            "storage '{}' does not support content-type '{content}'",
            s.id
        )))
    }
}
