//! `/nodes/{node}/storage`: status, content, `download-url` and `upload`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::cluster::used_bytes;
use super::tasks::start_task;
use super::{node_check, require_content, storage_of, R};
use crate::pve::server::{ApiError, Ctx};
use crate::pve::state::{now, Shared, State, Volume};

fn storage_json(st: &State, s: &crate::pve::StorageSpec, node: &str) -> Value {
    let used = used_bytes(st, &s.id, node);
    json!({"storage": s.id, "type": s.kind, "content": s.content.join(","), "active": 1, "enabled": 1,
        "shared": if s.shared {1} else {0}, "total": s.total, "used": used, "avail": s.total.saturating_sub(used),
        "used_fraction": used as f64 / s.total.max(1) as f64})
}

pub(super) fn storage_list(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let st = ctx.shared.st();
    let content = ctx.p("content").map(str::to_string);
    let list: Vec<Value> = ctx
        .shared
        .cfg
        .storages
        .iter()
        .filter(|s| s.nodes.is_empty() || s.nodes.contains(&node))
        .filter(|s| {
            ctx.caller
                .has(&format!("/storage/{}", s.id), "Datastore.Audit")
                || ctx
                    .caller
                    .has(&format!("/storage/{}", s.id), "Datastore.AllocateSpace")
        })
        .filter(|s| {
            content
                .as_ref()
                .map(|c| c.split(',').all(|c| s.content.iter().any(|x| x == c)))
                .unwrap_or(true)
        })
        .filter(|s| ctx.p("storage").map(|x| x == s.id).unwrap_or(true))
        .map(|s| storage_json(&st, s, &node))
        .collect();
    Ok(Value::Array(list))
}

pub(super) fn storage_status(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let s = storage_of(ctx, ctx.req("storage")?, &node)?;
    let st = ctx.shared.st();
    let mut o = storage_json(&st, &s, &node);
    if let Some(m) = o.as_object_mut() {
        m.remove("storage");
        m.remove("used_fraction");
    }
    Ok(o)
}

fn volume_json(v: &Volume) -> Value {
    let mut o = json!({"volid": v.volid, "content": v.content, "format": v.format, "size": v.size, "ctime": v.ctime, "used": v.size});
    if let Some(id) = v.vmid {
        o["vmid"] = json!(id);
    }
    o
}

pub(super) fn content_list(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let sid = ctx.req("storage")?.to_string();
    storage_of(ctx, &sid, &node)?;
    let content = ctx.p("content").map(str::to_string);
    let vmid: Option<u32> = ctx.p("vmid").and_then(|v| v.parse().ok());
    let st = ctx.shared.st();
    let list: Vec<Value> = st
        .volumes
        .values()
        .filter(|v| v.node == node && v.storage == sid)
        .filter(|v| content.as_ref().map(|c| &v.content == c).unwrap_or(true))
        .filter(|v| vmid.map(|id| v.vmid == Some(id)).unwrap_or(true))
        .map(|v| {
            let mut o = volume_json(v);
            if let Some(m) = o.as_object_mut() {
                m.remove("content");
            }
            o["content"] = json!(v.content);
            o
        })
        .collect();
    // `content` is not in the returns schema of every PVE version; keep only known keys.
    let known = ["volid", "format", "size", "ctime", "used", "vmid"];
    let list = list
        .into_iter()
        .map(|mut o| {
            if let Some(m) = o.as_object_mut() {
                m.retain(|k, _| known.contains(&k.as_str()));
            }
            o
        })
        .collect();
    Ok(Value::Array(list))
}

fn normalize_volid(storage: &str, volume: &str) -> String {
    if volume.contains(':') {
        volume.to_string()
    } else {
        format!("{storage}:{volume}")
    }
}

pub(super) fn content_get(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let sid = ctx.p("storage").unwrap_or("").to_string();
    let volid = normalize_volid(&sid, ctx.req("volume")?);
    let vsid = volid.split(':').next().unwrap_or("").to_string();
    ctx.require_any(
        &format!("/storage/{vsid}"),
        &["Datastore.Audit", "Datastore.AllocateSpace"],
    )?;
    let st = ctx.shared.st();
    let v = st
        .volumes
        .get(&(node.clone(), volid.clone()))
        .ok_or_else(|| ApiError::die(format!("volume '{volid}' does not exist")))?;
    let path = match v.content.as_str() {
        "iso" => format!(
            "/var/lib/vz/template/iso/{}",
            volid.split('/').next_back().unwrap_or("")
        ),
        "import" => format!(
            "/var/lib/vz/import/{}",
            volid.split('/').next_back().unwrap_or("")
        ),
        _ => format!("/dev/pve/{}", volid.split(':').nth(1).unwrap_or("")),
    };
    Ok(json!({"path": path, "size": v.size, "used": v.size, "format": v.format}))
}

pub(super) fn content_delete(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let sid = ctx.p("storage").unwrap_or("").to_string();
    let volid = normalize_volid(&sid, ctx.req("volume")?);
    let vsid = volid.split(':').next().unwrap_or("").to_string();
    ctx.require(&format!("/storage/{vsid}"), "Datastore.Allocate")?;
    {
        let st = ctx.shared.st();
        let v = st
            .volumes
            .get(&(node.clone(), volid.clone()))
            .ok_or_else(|| ApiError::die(format!("volume '{volid}' does not exist")))?;
        if let Some(owner) = v.vmid {
            if st
                .vms
                .get(&owner)
                .map(|vm| {
                    vm.config
                        .values()
                        .any(|c| c.split(',').next() == Some(volid.as_str()))
                })
                .unwrap_or(false)
            {
                return Err(ApiError::die(format!(
                    "volume '{volid}' is still in use by VM {owner}"
                )));
            }
        }
        let in_use = st.vms.values().find(|vm| {
            vm.node == node
                && vm
                    .config
                    .values()
                    .any(|c| c.split(',').next() == Some(volid.as_str()))
        });
        if let Some(vm) = in_use {
            return Err(ApiError::die(format!(
                "unable to delete '{volid}' - volume is used by VM {}",
                vm.vmid
            )));
        }
    }
    let shared = ctx.shared.clone();
    let node2 = node.clone();
    let v2 = volid.clone();
    let upid = start_task(ctx, &node, "imgdel", &volid, move |log| {
        Box::pin(async move {
            shared.st().volumes.remove(&(node2, v2.clone()));
            log.log(format!("Removed volume '{v2}'"));
            Ok(())
        })
    });
    Ok(json!(upid))
}

fn check_filename(content: &str, filename: &str) -> Result<(), ApiError> {
    if filename.contains('/') || filename.starts_with('.') || filename.is_empty() {
        return Err(ApiError::param(
            "filename",
            format!("invalid filename '{filename}'"),
        ));
    }
    let lower = filename.to_ascii_lowercase();
    let ok = match content {
        "iso" => lower.ends_with(".iso") || lower.ends_with(".img"),
        "vztmpl" => {
            lower.ends_with(".tar.gz") || lower.ends_with(".tar.xz") || lower.ends_with(".tar.zst")
        }
        "import" => [".qcow2", ".raw", ".vmdk", ".ova", ".ovf", ".img"]
            .iter()
            .any(|e| lower.ends_with(e)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::param(
            "filename",
            format!("invalid filename or wrong extension for content type '{content}'"),
        ))
    }
}

fn volid_for(sid: &str, content: &str, filename: &str) -> String {
    let dir = match content {
        "iso" => "iso",
        "vztmpl" => "vztmpl",
        _ => "import",
    };
    format!("{sid}:{dir}/{filename}")
}

pub(super) fn download_url(ctx: &mut Ctx) -> R {
    let node = node_check(ctx)?;
    let sid = ctx.req("storage")?.to_string();
    let s = storage_of(ctx, &sid, &node)?;
    let content = ctx.req("content")?.to_string();
    require_content(&s, &content)?;
    let filename = ctx.req("filename")?.to_string();
    check_filename(&content, &filename)?;
    let url = ctx.req("url")?.to_string();
    let volid = volid_for(&sid, &content, &filename);
    {
        let mut st = ctx.shared.st();
        if st.volumes.contains_key(&(node.clone(), volid.clone())) {
            return Err(ApiError::die(format!(
                "refusing to override existing file '{filename}'"
            )));
        }
        st.downloads.push(url.clone());
    }
    let shared = ctx.shared.clone();
    let delay = shared.cfg.timings.download;
    let size = image_size_hint(&shared, &url, &filename);
    let node2 = node.clone();
    let algo = ctx.p("checksum-algorithm").map(str::to_string);
    let task_id = filename.clone();
    let upid = start_task(ctx, &node, "download", &task_id, move |log| {
        Box::pin(async move {
            log.log(format!(
                "downloading {url} to /var/lib/vz/{}/{filename}",
                if content == "iso" {
                    "template/iso"
                } else {
                    "import"
                }
            ));
            tokio::time::sleep(delay).await;
            if let Some(a) = algo {
                log.log(format!(
                    "calculating checksum ({a})...OK, checksum verified"
                ));
            }
            log.log(format!(
                "download of '{url}' to '/var/lib/vz/.../{filename}' finished"
            ));
            shared.st().volumes.insert(
                (node2.clone(), volid.clone()),
                Volume {
                    volid,
                    storage: sid,
                    node: node2,
                    content: content.clone(),
                    format: if content == "iso" {
                        "iso".into()
                    } else {
                        ext_format(&filename)
                    },
                    size,
                    ctime: now(),
                    vmid: None,
                    data: None,
                    source_url: Some(url),
                },
            );
            Ok(())
        })
    });
    Ok(json!(upid))
}

fn ext_format(f: &str) -> String {
    let l = f.to_ascii_lowercase();
    if l.ends_with(".qcow2") {
        "qcow2".into()
    } else if l.ends_with(".vmdk") {
        "vmdk".into()
    } else if l.ends_with(".ova") {
        "ova".into()
    } else {
        "raw".into()
    }
}

fn image_size_hint(shared: &Shared, _url: &str, _filename: &str) -> u64 {
    shared.cfg.default_image_size
}

pub(super) fn upload(ctx: &mut Ctx) -> R {
    let node = node_check(ctx)?;
    let sid = ctx.req("storage")?.to_string();
    let s = storage_of(ctx, &sid, &node)?;
    let content = ctx.req("content")?.to_string();
    require_content(&s, &content)?;
    let (filename, data) = ctx
        .upload
        .take()
        .ok_or_else(|| ApiError::die("missing upload data (multipart field 'filename')"))?;
    check_filename(&content, &filename)?;
    if let (Some(algo), Some(sum)) = (ctx.p("checksum-algorithm"), ctx.p("checksum")) {
        if algo == "sha256" {
            use sha2::{Digest, Sha256};
            let got = hex::encode(Sha256::digest(&data));
            if !got.eq_ignore_ascii_case(sum) {
                return Err(ApiError::die(format!(
                    "checksum mismatch: got '{got}' != expect '{sum}'"
                )));
            }
        }
    }
    let volid = volid_for(&sid, &content, &filename);
    let shared = ctx.shared.clone();
    let node2 = node.clone();
    let size = data.len() as u64;
    let data = Arc::new(data);
    let task_id = filename.clone();
    let upid = start_task(ctx, &node, "imgcopy", &task_id, move |log| {
        Box::pin(async move {
            log.log(format!("target node: {node2}"));
            log.log(format!("target file: /var/lib/vz/template/iso/{filename}"));
            log.log(format!("file size is: {size}"));
            shared.st().volumes.insert(
                (node2.clone(), volid.clone()),
                Volume {
                    volid,
                    storage: sid,
                    node: node2,
                    content: content.clone(),
                    format: if content == "iso" {
                        "iso".into()
                    } else {
                        ext_format(&filename)
                    },
                    size,
                    ctime: now(),
                    vmid: None,
                    data: Some(data),
                    source_url: None,
                },
            );
            Ok(())
        })
    });
    Ok(json!(upid))
}
