//! Ephemeral resource `waddle_talos_kubeconfig`: a short-lived admin kubeconfig signed locally
//! from the cluster's Kubernetes CA (in the `machine_secrets` bundle of `waddle_talos_cluster`),
//! never stored in a plan or in state. No request is made to the cluster.

use waddle_framework::prelude::*;
use waddle_talos::secrets::{
    admin_kubeconfig, issue_kubernetes_admin_certificate, SecretsBundle, SystemClock,
};

/// Type name.
pub const TYPE_NAME: &str = "waddle_talos_kubeconfig";
/// Default of `ttl`.
pub const DEFAULT_TTL: &str = "1h";
/// Longest `ttl` accepted: a longer-lived credential belongs in state-managed outputs.
const MAX_TTL_SECS: u64 = 7 * 24 * 3600;

/// The ephemeral resource.
#[derive(Debug, Default, Clone, Copy)]
pub struct TalosKubeconfig;

/// The schema.
pub fn schema() -> Schema {
    Schema::new(
        "A short-lived admin kubeconfig for a Talos cluster, signed on the machine running \
         `tofu` from the cluster's Kubernetes CA (`CN=admin`, `O=system:masters`, ECDSA P-256) \
         and never written to a plan or to state, unlike the `kubeconfig` attribute of \
         `waddle_talos_cluster`. Needs Terraform >= 1.10 or OpenTofu >= 1.11. Typical use: \
         configure the `kubernetes` or `helm` provider with it.",
    )
    .attribute(
        "machine_secrets",
        Attribute::string().required().sensitive().description(
            "The cluster's secrets bundle in `secrets.yaml` form, e.g. \
             `waddle_talos_cluster.this.machine_secrets`.",
        ),
    )
    .attribute(
        "cluster_name",
        Attribute::string().required().description(
            "Cluster name: the kubeconfig's cluster entry and `admin@<name>` context.",
        ),
    )
    .attribute(
        "endpoint",
        Attribute::string().required().description(
            "Kubernetes API URL, `https://<host>:<port>`, e.g. \
             `waddle_talos_cluster.this.endpoint`.",
        ),
    )
    .attribute(
        "ttl",
        Attribute::string()
            .optional()
            .computed()
            .description(format!(
                "Validity of the client certificate, a duration such as `30m` or `2h` (at most 7 \
             days). Defaults to `\"{DEFAULT_TTL}\"`."
            )),
    )
    .attribute(
        "kubeconfig",
        Attribute::string()
            .computed()
            .sensitive()
            .description("The kubeconfig (YAML)."),
    )
    .attribute(
        "expires_at",
        Attribute::string()
            .computed()
            .description("When the client certificate expires (RFC 3339, UTC)."),
    )
}

/// Why a `ttl` cannot be used.
#[derive(Debug, thiserror::Error)]
enum TtlError {
    #[error("{0:?} is not a duration such as \"30m\" or \"2h\": {1}")]
    NotADuration(String, crate::resources::timeouts::DurationError),
    #[error("{0:?} must be between 1m and 168h")]
    Range(String),
}

fn ttl_of(config: &Value) -> Result<std::time::Duration, TtlError> {
    let raw = config
        .get_attr("ttl")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TTL);
    let d = crate::resources::timeouts::parse_duration(raw)
        .map_err(|e| TtlError::NotADuration(raw.into(), e))?;
    if d.as_secs() < 60 || d.as_secs() > MAX_TTL_SECS {
        return Err(TtlError::Range(raw.into()));
    }
    Ok(d)
}

fn validate(config: &Value, diags: &mut Diagnostics) {
    if config.get_attr("ttl").is_some_and(Value::is_known) {
        if let Err(e) = ttl_of(config) {
            diags.error_at(AttributePath::attr("ttl"), "Invalid ttl", e.to_string());
        }
    }
    if let Some(ep) = config.get_attr("endpoint").and_then(Value::as_str) {
        let ok = url::Url::parse(ep)
            .ok()
            .filter(|u| u.scheme() == "https" && u.host().is_some());
        if ok.is_none() {
            diags.error_at(
                AttributePath::attr("endpoint"),
                "Invalid endpoint",
                format!("{ep:?} is not an https:// URL with a host, e.g. https://10.10.0.20:6443"),
            );
        }
    }
    if let Some(n) = config.get_attr("cluster_name").and_then(Value::as_str) {
        let ok = !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            diags.error_at(
                AttributePath::attr("cluster_name"),
                "Invalid cluster name",
                format!("{n:?}: lower-case letters, digits and '-', at most 63 characters"),
            );
        }
    }
}

/// Opens: signs a fresh admin certificate and renders the kubeconfig.
pub fn open(config: &Value, diags: &mut Diagnostics) -> Option<Value> {
    validate(config, diags);
    if diags.has_errors() {
        return None;
    }
    let str_of = |k: &str| {
        config
            .get_attr(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let ttl = ttl_of(config).ok()?;
    let bundle = match SecretsBundle::from_yaml(&str_of("machine_secrets")) {
        Ok(b) => b,
        Err(e) => {
            // The error names the field, never its value.
            diags.error_at(
                AttributePath::attr("machine_secrets"),
                "Invalid machine_secrets",
                e.to_string(),
            );
            return None;
        }
    };
    let ttl = time::Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(3600));
    let cert = match issue_kubernetes_admin_certificate(&bundle, &SystemClock, ttl) {
        Ok(c) => c,
        Err(e) => {
            diags.error_at(
                AttributePath::attr("machine_secrets"),
                "Cannot sign the admin certificate",
                e.to_string(),
            );
            return None;
        }
    };
    let expires = (time::OffsetDateTime::now_utc() + ttl)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let cluster = str_of("cluster_name");
    let kubeconfig = admin_kubeconfig(&bundle, &cluster, &str_of("endpoint"), &cert);
    let keep = |name: &str| config.get_attr(name).cloned().unwrap_or(Value::Null);
    Some(Value::object([
        ("machine_secrets", keep("machine_secrets")),
        ("cluster_name", keep("cluster_name")),
        ("endpoint", keep("endpoint")),
        (
            "ttl",
            Value::from(
                config
                    .get_attr("ttl")
                    .and_then(Value::as_str)
                    .unwrap_or(DEFAULT_TTL),
            ),
        ),
        ("kubeconfig", Value::from(kubeconfig)),
        ("expires_at", Value::from(expires)),
    ]))
}

#[async_trait]
impl EphemeralResource for TalosKubeconfig {
    fn type_name(&self) -> &str {
        TYPE_NAME
    }
    fn schema(&self) -> Schema {
        schema()
    }
    async fn validate_config(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        validate(config, diags);
    }
    async fn open(&self, _ctx: &Context, config: Value, diags: &mut Diagnostics) -> Option<Value> {
        open(&config, diags)
    }
}

#[cfg(test)]
mod tests;
