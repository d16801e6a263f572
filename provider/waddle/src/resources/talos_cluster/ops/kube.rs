//! The cluster's Kubernetes API with the admin kubeconfig's credentials: what a scale-down
//! needs (deleting the Kubernetes Node object of a removed node), what a drain needs
//! (cordon, the pods of a node, evictions) and the removed-APIs pre-check of a Kubernetes
//! upgrade ([`removed_apis`]).

use super::OpError;
use std::time::Duration;

pub mod removed_apis;

use super::R;
use base64::Engine as _;
use waddle_framework::error_chain;

/// An admin client of the cluster's Kubernetes API.
pub struct KubeAdmin {
    server: String,
    client: reqwest::Client,
}

/// Why the kubeconfig gives no client.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// Not YAML of a kubeconfig.
    #[error("the kubeconfig is not readable: {0}")]
    Parse(String),
    /// A field is missing.
    #[error("the kubeconfig has no {0}")]
    Missing(&'static str),
    /// A certificate or key is unusable.
    #[error("the kubeconfig's {what} is unusable: {message}")]
    Credentials { what: &'static str, message: String },
}

fn b64_field(v: &serde_json::Value, what: &'static str) -> Result<Vec<u8>, KubeconfigError> {
    let s = v.as_str().ok_or(KubeconfigError::Missing(what))?;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| KubeconfigError::Credentials {
            what,
            message: e.to_string(),
        })
}

impl KubeAdmin {
    /// From the admin kubeconfig (the first cluster and user), through `proxy_url` if set.
    pub fn from_kubeconfig(kc: &str, proxy_url: Option<&str>) -> Result<Self, KubeconfigError> {
        let v: serde_json::Value =
            serde_yaml_ng::from_str(kc).map_err(|e| KubeconfigError::Parse(e.to_string()))?;
        let cluster = &v["clusters"][0]["cluster"];
        let user = &v["users"][0]["user"];
        let server = cluster["server"]
            .as_str()
            .ok_or(KubeconfigError::Missing("cluster server"))?
            .trim_end_matches('/')
            .to_string();
        let ca = b64_field(
            &cluster["certificate-authority-data"],
            "certificate-authority-data",
        )?;
        let mut pem = b64_field(&user["client-certificate-data"], "client-certificate-data")?;
        pem.push(b'\n');
        pem.extend(b64_field(&user["client-key-data"], "client-key-data")?);
        let cred = |what: &'static str| {
            move |e: reqwest::Error| KubeconfigError::Credentials {
                what,
                message: error_chain(&e),
            }
        };
        let ca = reqwest::Certificate::from_pem(&ca).map_err(cred("certificate-authority-data"))?;
        let id = reqwest::Identity::from_pem(&pem).map_err(cred("client certificate and key"))?;
        let mut b = reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(id)
            .timeout(Duration::from_secs(15));
        b = match proxy_url {
            Some(u) => b.proxy(reqwest::Proxy::all(u).map_err(cred("proxy_url"))?),
            None => b.no_proxy(),
        };
        let client = b.build().map_err(cred("TLS configuration"))?;
        Ok(KubeAdmin { server, client })
    }

    /// Deletes the Node object `name`: `Ok(true)` deleted, `Ok(false)` there was none.
    pub async fn delete_node(&self, name: &str) -> R<bool> {
        let url = format!("{}/api/v1/nodes/{name}", self.server);
        let r = self.client.delete(&url).send().await.map_err(|e| {
            OpError::Step(format!("Kubernetes API DELETE {url}: {}", error_chain(&e)))
        })?;
        match r.status().as_u16() {
            200 | 202 => Ok(true),
            404 => Ok(false),
            code => {
                let body = r.text().await.unwrap_or_default();
                let msg = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_string))
                    .unwrap_or(body);
                Err(OpError::Step(format!(
                    "Kubernetes API DELETE {url}: HTTP {code}: {msg}"
                )))
            }
        }
    }
}

/// A pod a drain looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// Owned by a DaemonSet (its controller would put it back at once: left alone, as
    /// `kubectl drain --ignore-daemonsets` does).
    pub daemon_set: bool,
    /// A static pod's mirror (`kubernetes.io/config.mirror`): cannot be evicted.
    pub mirror: bool,
}

impl PodRef {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What an eviction request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eviction {
    /// Evicted (or the pod was already gone).
    Done,
    /// `429`: a PodDisruptionBudget (or the API's rate limits) forbids it now; the message.
    Refused(String),
}

/// The message of a Kubernetes `Status` answer, with its causes.
fn status_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.chars().take(300).collect();
    };
    let mut msg = v["message"].as_str().unwrap_or_default().to_string();
    if let Some(causes) = v["details"]["causes"].as_array() {
        for c in causes.iter().filter_map(|c| c["message"].as_str()) {
            msg.push_str(" (");
            msg.push_str(c);
            msg.push(')');
        }
    }
    msg
}

impl KubeAdmin {
    async fn send(&self, what: &str, rb: reqwest::RequestBuilder) -> R<(u16, String)> {
        let r = rb
            .send()
            .await
            .map_err(|e| OpError::Step(format!("Kubernetes API {what}: {}", error_chain(&e))))?;
        let code = r.status().as_u16();
        let body = r
            .text()
            .await
            .map_err(|e| OpError::Step(format!("Kubernetes API {what}: {}", error_chain(&e))))?;
        Ok((code, body))
    }

    /// Cordons (`true`) or uncordons node `name` (`spec.unschedulable`, what `kubectl
    /// cordon`/`uncordon` patch).
    pub async fn set_unschedulable(&self, name: &str, unschedulable: bool) -> R<()> {
        let url = format!("{}/api/v1/nodes/{name}", self.server);
        let what = format!("PATCH {url}");
        let body = serde_json::json!({"spec": {"unschedulable": unschedulable}});
        let rb = self
            .client
            .patch(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/strategic-merge-patch+json",
            )
            .body(body.to_string());
        match self.send(&what, rb).await? {
            (200, _) => Ok(()),
            (code, b) => Err(OpError::Step(format!(
                "Kubernetes API {what}: HTTP {code}: {}",
                status_message(&b)
            ))),
        }
    }

    /// The pods bound to node `name`, all namespaces.
    pub async fn pods_on(&self, name: &str) -> R<Vec<PodRef>> {
        let base = format!("{}/api/v1/pods", self.server);
        let what = format!("GET {base}");
        let selector: String =
            url::form_urlencoded::byte_serialize(format!("spec.nodeName={name}").as_bytes())
                .collect();
        let rb = self.client.get(format!("{base}?fieldSelector={selector}"));
        let (code, body) = self.send(&what, rb).await?;
        if code != 200 {
            return Err(OpError::Step(format!(
                "Kubernetes API {what}: HTTP {code}: {}",
                status_message(&body)
            )));
        }
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| OpError::Step(format!("Kubernetes API {what}: not a PodList: {e}")))?;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        Ok(items
            .iter()
            .map(|p| {
                let md = &p["metadata"];
                PodRef {
                    namespace: md["namespace"].as_str().unwrap_or_default().to_string(),
                    name: md["name"].as_str().unwrap_or_default().to_string(),
                    daemon_set: md["ownerReferences"].as_array().is_some_and(|o| {
                        o.iter()
                            .any(|r| r["controller"] == true && r["kind"] == "DaemonSet")
                    }),
                    mirror: md["annotations"]
                        .get("kubernetes.io/config.mirror")
                        .is_some(),
                }
            })
            .collect())
    }

    /// Asks the Eviction subresource to evict a pod (policy/v1).
    pub async fn evict(&self, pod: &PodRef) -> R<Eviction> {
        let url = format!(
            "{}/api/v1/namespaces/{}/pods/{}/eviction",
            self.server, pod.namespace, pod.name
        );
        let what = format!("POST {url}");
        let body = serde_json::json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
        });
        let rb = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        match self.send(&what, rb).await? {
            (200 | 201 | 404, _) => Ok(Eviction::Done),
            (429, b) => Ok(Eviction::Refused(status_message(&b))),
            (code, b) => Err(OpError::Step(format!(
                "Kubernetes API {what}: HTTP {code}: {}",
                status_message(&b)
            ))),
        }
    }

    /// GET a JSON document; `Ok(None)` on 404.
    async fn get_json(&self, path: &str) -> R<Option<serde_json::Value>> {
        let url = format!("{}{path}", self.server);
        let what = format!("GET {url}");
        match self.send(&what, self.client.get(&url)).await? {
            (200, b) => serde_json::from_str(&b)
                .map(Some)
                .map_err(|e| OpError::Step(format!("Kubernetes API {what}: not JSON: {e}"))),
            (404, _) => Ok(None),
            (code, b) => Err(OpError::Step(format!(
                "Kubernetes API {what}: HTTP {code}: {}",
                status_message(&b)
            ))),
        }
    }

    /// Objects the cluster still writes through an API version that Kubernetes 1.`target`
    /// no longer serves (for every removal after 1.`current` up to 1.`target`, see
    /// [`removed_apis::REMOVED`]): through discovery, the removed group/versions still
    /// served; through their list endpoints, the objects whose managed fields (or
    /// `kubectl apply`'s last-applied configuration) were written in that version. Each
    /// as `<resource>.<group>/<version> [namespace/]name`.
    pub async fn objects_in_removed_apis(&self, current: u32, target: u32) -> R<Vec<String>> {
        let mut out = Vec::new();
        for r in removed_apis::removed_between(current, target) {
            let gv = format!("{}/{}", r.group, r.version);
            let base = if r.group.is_empty() {
                format!("/api/{}", r.version)
            } else {
                format!("/apis/{gv}")
            };
            let Some(list) = self.get_json(&base).await? else {
                continue; // not served (any more): nothing can be stored through it
            };
            let served: Vec<&str> = list["resources"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
                .unwrap_or_default();
            for res in r.resources.iter().filter(|x| served.contains(x)) {
                let Some(objs) = self.get_json(&format!("{base}/{res}")).await? else {
                    continue;
                };
                for o in objs["items"].as_array().into_iter().flatten() {
                    if removed_apis::written_in(o, &gv) {
                        let md = &o["metadata"];
                        let name = md["name"].as_str().unwrap_or_default();
                        let id = match md["namespace"].as_str() {
                            Some(ns) => format!("{ns}/{name}"),
                            None => name.to_string(),
                        };
                        out.push(format!(
                            "{res}.{gv} {id} (removed in Kubernetes 1.{})",
                            r.removed_in
                        ));
                    }
                }
            }
        }
        Ok(out)
    }
}
