//! Endpoint behaviour: [`dispatch`] routes a request to the file of its API area; what the
//! areas share is `common.rs`.

mod agent;
mod cluster;
mod common;
mod network;
mod power;
mod qemu;
mod qemu_config;
mod sdn;
mod storage;
mod tasks;

use serde_json::{json, Value};

use crate::pve::server::{ApiError, Ctx};
use agent::{
    agent_exec, agent_exec_status, agent_file_read, agent_file_write, agent_ifaces, agent_ready,
};
use cluster::{access_ticket, nextid, nodes_list, resources};
use common::{vm_exists, R};
use network::{net_apply, net_create, net_delete, net_get, net_list, net_revert, net_update};
use power::{qemu_reboot, qemu_start, qemu_status, qemu_stop};
use qemu::{qemu_create, qemu_delete, qemu_list};
use qemu_config::{qemu_config_get, qemu_config_set, qemu_pending, qemu_resize};
use sdn::{sdn_apply, sdn_subnets, sdn_vnets, sdn_zones};
use storage::{
    content_delete, content_get, content_list, download_url, storage_list, storage_status, upload,
};
use tasks::{finish_task, task_get, task_log, task_status, tasks_list};

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
