//! A minimal Kubernetes API server on a cluster's VIP (port [`super::FleetOptions::kube_api_port`]),
//! backed by the cluster's emulated etcd ([`super::etcd_data`]).
//!
//! HTTPS with the serving certificate from the cluster's Kubernetes CA; a client certificate
//! is optional at the TLS layer and checked per request, as kube-apiserver does:
//! `/readyz`, `/livez`, `/healthz` and `/version` are public (`system:public-info-viewer`),
//! everything else needs a client certificate signed by the Kubernetes CA (else `401`) whose
//! Organization is `system:masters` (else `403`; the admin kubeconfig's certificate has it).
//!
//! Served: discovery (`/api`, `/api/v1`, `/apis`, legacy format), `nodes` (list, get,
//! delete, patch) and `namespaces` (list, get, create); pods, evictions, PodDisruptionBudgets
//! and FlowSchemas in [`super::kube_workloads`]; as JSON or, when asked through `Accept`
//! (`as=Table`, what `kubectl get` asks for), as a `meta.k8s.io/v1` Table. Node conditions
//! are what the kubelet reports: with CNI `none` a running node is `Ready=False`
//! (`KubeletNotReady`: the container runtime network is not ready, the CNI plugin is not
//! initialized) and tainted `node.kubernetes.io/not-ready`; a node whose machine is down is
//! `Ready=Unknown` (`NodeStatusUnknown`). Every request but the health endpoints needs etcd
//! quorum (`504` otherwise, after no wait).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::etcd_data::{namespace_key, node_key};
use super::{lock, Fleet, Stage};

/// TLS for the API server: its certificate, client certificates optional but verified
/// against the Kubernetes CA when sent.
fn server_tls(
    crt_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = waddle_talos::api::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in waddle_talos::api::tls::certs_from_pem(client_ca_pem)? {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| e.to_string())?;
    let chain = waddle_talos::api::tls::certs_from_pem(crt_pem)?;
    let key = waddle_talos::api::tls::private_key_from_pem(key_pem)?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(cfg))
}

/// Who is calling: `None` anonymous, else the Organizations of the verified certificate.
type Caller = Option<Vec<String>>;

fn caller_of(tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Caller {
    let der = tls.get_ref().1.peer_certificates()?.first()?.clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(
        cert.subject()
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect(),
    )
}

/// Starts the API server of `cluster_id` on `vip`.
pub(super) async fn serve(
    fleet: &Arc<Fleet>,
    cluster_id: &str,
    vip: IpAddr,
    ca_crt: &str,
    ca_key: &str,
) -> Result<super::net::Listener, String> {
    let cert = super::certs::kube_apiserver_cert(ca_crt, ca_key, &[vip])?;
    let tls = server_tls(&cert.crt, &cert.key, ca_crt)?;
    let addr = SocketAddr::new(vip, fleet.opts.kube_api_port);
    let listener = super::net::bind(addr)
        .await
        .map_err(|e| format!("listening on {addr}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let cancel = CancellationToken::new();
    let mut rx = super::net::accept_loop(listener, tls, cancel.clone());
    let weak = Arc::downgrade(fleet);
    let cid = cluster_id.to_string();
    let task = tokio::spawn(async move {
        while let Some(Ok(io)) = rx.recv().await {
            let caller = caller_of(io.get_ref());
            let weak = weak.clone();
            let cid = cid.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let weak = weak.clone();
                    let cid = cid.clone();
                    let caller = caller.clone();
                    async move { Ok::<_, Infallible>(handle(&weak, &cid, &caller, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    Ok(super::net::Listener::new(addr, cancel, task))
}

fn respond(code: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(code: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    respond(
        code,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn status(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> Response<Full<Bytes>> {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    json_response(code, &v)
}

fn not_found(kind: &str, name: &str) -> Response<Full<Bytes>> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{kind} \"{name}\" not found"),
        Some(json!({"name": name, "kind": kind})),
    )
}

async fn handle(
    weak: &Weak<Fleet>,
    cid: &str,
    caller: &Caller,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(fleet) = weak.upgrade() else {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "gone",
            None,
        );
    };
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let table = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    // Public endpoints.
    match (method.clone(), path.as_str()) {
        (Method::GET, "/readyz" | "/livez" | "/healthz") => {
            let check = path.trim_start_matches('/').to_string();
            return match fleet.readyz(cid) {
                Ok(()) => respond(StatusCode::OK, "text/plain; charset=utf-8", b"ok".to_vec()),
                Err(why) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("[-]{why}\n{check} check failed\n").into_bytes(),
                ),
            };
        }
        (Method::GET, "/version") => return json_response(StatusCode::OK, &version(&fleet, cid)),
        _ => {}
    }
    let Some(orgs) = caller else {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        );
    };
    if !orgs.iter().any(|o| o == "system:masters") {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("forbidden: the client certificate's groups {orgs:?} may not {method} {path}"),
            None,
        );
    }
    if let Err(why) = fleet.readyz(cid) {
        return status(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            &format!("Timeout: request did not complete within requested timeout - {why}"),
            None,
        );
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let query = req.uri().query().map(str::to_string);
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = if method == Method::GET || method == Method::DELETE {
        Bytes::new()
    } else {
        match Limited::new(req.into_body(), 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string(), None),
        }
    };
    let minor = kube_version(&fleet, cid)
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let call = super::kube_workloads::Call {
        fleet: &fleet,
        cid,
        method: &method,
        segs: &segs,
        query: query.as_deref(),
        content_type: &content_type,
        body: &body,
        minor,
    };
    if let Some(r) = call.handle() {
        return r;
    }
    match (method, segs.as_slice()) {
        (Method::GET, ["api"]) => json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        (Method::GET, ["api", "v1"]) => json_response(StatusCode::OK, &resources()),
        (Method::GET, ["api", "v1", "nodes"]) => {
            let items: Vec<Value> = data_list(&fleet, cid, "/registry/minions/")
                .into_iter()
                .map(|n| with_node_status(&fleet, cid, n))
                .collect();
            list_response(&fleet, cid, "NodeList", items, table.then_some(node_row))
        }
        (Method::GET, ["api", "v1", "nodes", name]) => {
            match data_get(&fleet, cid, &node_key(name)) {
                Some(n) => json_response(StatusCode::OK, &with_node_status(&fleet, cid, n)),
                None => not_found("nodes", name),
            }
        }
        (Method::DELETE, ["api", "v1", "nodes", name]) => {
            let gone = lock(&fleet.clusters)
                .get_mut(cid)
                .and_then(|c| c.data.delete(&node_key(name)));
            match gone {
                Some(n) => json_response(StatusCode::OK, &n),
                None => not_found("nodes", name),
            }
        }
        (Method::GET, ["api", "v1", "namespaces"]) => {
            let items = data_list(&fleet, cid, "/registry/namespaces/");
            list_response(
                &fleet,
                cid,
                "NamespaceList",
                items,
                table.then_some(namespace_row),
            )
        }
        (Method::GET, ["api", "v1", "namespaces", name]) => {
            match data_get(&fleet, cid, &namespace_key(name)) {
                Some(n) => json_response(StatusCode::OK, &n),
                None => not_found("namespaces", name),
            }
        }
        (Method::POST, ["api", "v1", "namespaces"]) => {
            let obj: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string(), None)
                }
            };
            let Some(name) = obj["metadata"]["name"].as_str().filter(|n| !n.is_empty()) else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "Namespace \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    None,
                );
            };
            let created = lock(&fleet.clusters)
                .get_mut(cid)
                .is_some_and(|c| c.data.create_namespace(name));
            if !created {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("namespaces \"{name}\" already exists"),
                    Some(json!({"name": name, "kind": "namespaces"})),
                );
            }
            match data_get(&fleet, cid, &namespace_key(name)) {
                Some(n) => json_response(StatusCode::CREATED, &n),
                None => not_found("namespaces", name),
            }
        }
        (m, _) if m != Method::GET && path.starts_with("/api/v1/") => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            None,
        ),
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            None,
        ),
    }
}

fn data_list(fleet: &Fleet, cid: &str, prefix: &str) -> Vec<Value> {
    lock(&fleet.clusters)
        .get(cid)
        .map(|c| c.data.list(prefix))
        .unwrap_or_default()
}

fn data_get(fleet: &Fleet, cid: &str, key: &str) -> Option<Value> {
    lock(&fleet.clusters)
        .get(cid)
        .and_then(|c| c.data.objects.get(key).cloned())
}

fn revision(fleet: &Fleet, cid: &str) -> u64 {
    lock(&fleet.clusters)
        .get(cid)
        .map_or(0, |c| c.data.revision)
}

/// The Kubernetes version of the cluster: the tag of `cluster.apiServer.image` of one of its
/// control planes.
fn kube_version(fleet: &Fleet, cid: &str) -> String {
    lock(&fleet.nodes)
        .iter()
        .find_map(|n| {
            let st = lock(&n.inner.state);
            let c = st
                .config
                .as_ref()
                .filter(|c| c.control_plane && c.cluster_id == cid)?;
            c.docs
                .iter()
                .find(|d| d.get("kind").is_none())
                .and_then(|d| d["cluster"]["apiServer"]["image"].as_str())
                .and_then(|i| i.rsplit_once(':').map(|(_, t)| t.to_string()))
        })
        .unwrap_or_else(|| "v0.0.0".into())
}

fn version(fleet: &Fleet, cid: &str) -> Value {
    let v = kube_version(fleet, cid);
    let mut parts = v.trim_start_matches('v').split('.');
    json!({
        "major": parts.next().unwrap_or("0"),
        "minor": parts.next().unwrap_or("0"),
        "gitVersion": v,
        "gitCommit": "emulated",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {"name": "namespaces", "singularName": "namespace", "namespaced": false,
             "kind": "Namespace", "verbs": ["create", "get", "list"], "shortNames": ["ns"]},
            {"name": "nodes", "singularName": "node", "namespaced": false,
             "kind": "Node", "verbs": ["delete", "get", "list", "patch"], "shortNames": ["no"]},
            {"name": "pods", "singularName": "pod", "namespaced": true,
             "kind": "Pod", "verbs": ["create", "delete", "get", "list"], "shortNames": ["po"]},
            {"name": "pods/eviction", "singularName": "", "namespaced": true,
             "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]},
        ],
    })
}

/// A Node object with the status its kubelet reports now.
fn with_node_status(fleet: &Fleet, cid: &str, mut n: Value) -> Value {
    let name = n["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let running = lock(&fleet.nodes).iter().find_map(|m| {
        if m.stage() != Stage::Running {
            return None;
        }
        let st = lock(&m.inner.state);
        let c = st.config.as_ref()?;
        (c.cluster_id == cid && c.hostname == name).then(|| {
            let cni = c
                .docs
                .iter()
                .find(|d| d.get("kind").is_none())
                .and_then(|d| d["cluster"]["network"]["cni"]["name"].as_str())
                .unwrap_or("flannel")
                .to_string();
            (st.address, cni)
        })
    });
    let now = super::etcd_data::now_rfc3339();
    let cond = |t: &str, s: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": msg,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let (ready, taint) = match &running {
        Some((_, cni)) if cni == "none" => (
            cond(
                "Ready",
                "False",
                "KubeletNotReady",
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
            ),
            "node.kubernetes.io/not-ready",
        ),
        Some(_) => (
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            "",
        ),
        None => (
            cond("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
            "node.kubernetes.io/unreachable",
        ),
    };
    let pressure = |t: &str, reason: &str| {
        if running.is_some() {
            cond(t, "False", reason, "kubelet has sufficient resources")
        } else {
            cond(
                t,
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            )
        }
    };
    n["status"]["conditions"] = json!([
        pressure("MemoryPressure", "KubeletHasSufficientMemory"),
        pressure("DiskPressure", "KubeletHasNoDiskPressure"),
        pressure("PIDPressure", "KubeletHasSufficientPID"),
        ready,
    ]);
    let mut addresses = vec![json!({"type": "Hostname", "address": name})];
    if let Some((Some(ip), _)) = &running {
        addresses.insert(0, json!({"type": "InternalIP", "address": ip.to_string()}));
    }
    n["status"]["addresses"] = json!(addresses);
    let mut taints = Vec::new();
    if !taint.is_empty() {
        taints.push(json!({"key": taint, "effect": "NoSchedule"}));
    }
    if n["spec"]["unschedulable"].as_bool().unwrap_or(false) {
        // The node lifecycle controller's taint of a cordoned node.
        taints.push(json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}));
    }
    if !taints.is_empty() {
        n["spec"]["taints"] = json!(taints);
    }
    n
}

type Row = fn(&Value) -> Vec<Value>;

fn age(obj: &Value) -> String {
    let created = obj["metadata"]["creationTimestamp"].as_str().and_then(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    });
    let Some(t) = created else {
        return "<unknown>".into();
    };
    let s = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn node_row(n: &Value) -> Vec<Value> {
    let conds = n["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = conds
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or("Unknown");
    let roles: Vec<String> = n["metadata"]["labels"]
        .as_object()
        .map(|l| {
            l.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    vec![
        n["metadata"]["name"].clone(),
        json!(if ready == "True" { "Ready" } else { "NotReady" }),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        json!(age(n)),
        n["status"]["nodeInfo"]["kubeletVersion"].clone(),
    ]
}

fn namespace_row(n: &Value) -> Vec<Value> {
    vec![
        n["metadata"]["name"].clone(),
        n["status"]["phase"].clone(),
        json!(age(n)),
    ]
}

fn list_response(
    fleet: &Fleet,
    cid: &str,
    kind: &str,
    items: Vec<Value>,
    table: Option<Row>,
) -> Response<Full<Bytes>> {
    let rv = revision(fleet, cid).to_string();
    let Some(row) = table else {
        return json_response(
            StatusCode::OK,
            &json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}),
        );
    };
    let col = |name: &str, format: &str| json!({"name": name, "type": "string", "format": format, "description": name, "priority": 0});
    let columns = if kind == "NodeList" {
        vec![
            col("Name", "name"),
            col("Status", ""),
            col("Roles", ""),
            col("Age", ""),
            col("Version", ""),
        ]
    } else {
        vec![col("Name", "name"), col("Status", ""), col("Age", "")]
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": row(o),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv},
            "columnDefinitions": columns,
            "rows": rows,
        }),
    )
}
