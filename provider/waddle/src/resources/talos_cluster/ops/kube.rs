//! The cluster's Kubernetes API with the admin kubeconfig's credentials: what a scale-down
//! needs (deleting the Kubernetes Node object of a removed node).

use std::time::Duration;

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
    pub async fn delete_node(&self, name: &str) -> Result<bool, String> {
        let url = format!("{}/api/v1/nodes/{name}", self.server);
        let r = self
            .client
            .delete(&url)
            .send()
            .await
            .map_err(|e| format!("Kubernetes API DELETE {url}: {}", error_chain(&e)))?;
        match r.status().as_u16() {
            200 | 202 => Ok(true),
            404 => Ok(false),
            code => {
                let body = r.text().await.unwrap_or_default();
                let msg = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_string))
                    .unwrap_or(body);
                Err(format!("Kubernetes API DELETE {url}: HTTP {code}: {msg}"))
            }
        }
    }
}
