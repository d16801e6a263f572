//! What the handlers of every API area share: the response type, node and VMID checks,
//! sizes, config key kinds and storage lookups.

use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

use crate::pve::server::{ApiError, Ctx};

pub(super) type R = Result<Value, ApiError>;
pub(super) type BoxFut = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

pub(super) fn node_check(ctx: &Ctx) -> Result<String, ApiError> {
    let node = ctx.req("node")?.to_string();
    if !ctx.shared.cfg.nodes.contains(&node) {
        return Err(ApiError::die(format!(
            "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
        )));
    }
    Ok(node)
}

pub(super) fn vmid(ctx: &Ctx) -> Result<u32, ApiError> {
    ctx.req("vmid")?
        .parse()
        .map_err(|_| ApiError::param("vmid", "type check ('integer') failed"))
}

pub(super) fn no_conf(node: &str, vmid: u32) -> ApiError {
    ApiError::die(format!(
        "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
    ))
}

pub(super) fn vm_exists(ctx: &Ctx) -> Result<(String, u32), ApiError> {
    let node = node_check(ctx)?;
    let id = vmid(ctx)?;
    let st = ctx.shared.st();
    match st.vms.get(&id) {
        Some(vm) if vm.node == node => Ok((node, id)),
        _ => Err(no_conf(&node, id)),
    }
}

pub(super) fn size_str(bytes: u64) -> String {
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

pub(super) fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1024f64),
        'M' => (&s[..s.len() - 1], 1024f64 * 1024.0),
        'G' => (&s[..s.len() - 1], 1024f64 * 1024.0 * 1024.0),
        'T' => (&s[..s.len() - 1], 1024f64 * 1024.0 * 1024.0 * 1024.0),
        _ => (s, 1f64),
    };
    num.parse::<f64>().ok().map(|n| (n * mult) as u64)
}

pub(super) fn is_disk_key(k: &str) -> bool {
    k == "efidisk0"
        || k == "tpmstate0"
        || ["ide", "sata", "scsi", "virtio", "unused"].iter().any(|p| {
            k.strip_prefix(p)
                .map(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
                .unwrap_or(false)
        })
}

pub(super) fn is_net_key(k: &str) -> bool {
    k.strip_prefix("net")
        .map(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or(false)
}

pub(super) fn prop_format(ctx: &Ctx, key: &str) -> Option<Map<String, Value>> {
    let ep = ctx.shared.schema.endpoint("POST", "/nodes/{node}/qemu")?;
    let props = ep.properties()?;
    let schema = crate::spec::lookup_prop_pub(props, key)?;
    schema.get("format").and_then(Value::as_object).cloned()
}

pub(super) fn storage_of(
    ctx: &Ctx,
    id: &str,
    node: &str,
) -> Result<crate::pve::StorageSpec, ApiError> {
    ctx.shared
        .cfg
        .storages
        .iter()
        .find(|s| s.id == id && (s.nodes.is_empty() || s.nodes.iter().any(|n| n == node)))
        .cloned()
        .ok_or_else(|| ApiError::die(format!("storage '{id}' does not exist")))
}

pub(super) fn require_content(s: &crate::pve::StorageSpec, content: &str) -> Result<(), ApiError> {
    if s.content.iter().any(|c| c == content) {
        Ok(())
    } else {
        Err(ApiError::die(format!(
            "storage '{}' does not support content-type '{content}'",
            s.id
        )))
    }
}
