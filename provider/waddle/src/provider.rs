//! The `waddle` provider: configuration of the `provider "waddle" {}` block.
//!
//! Every attribute is optional so offline features (the `waddle_talos_image` data source,
//! the `talos_schematic_id` function) work with an empty block. Values come from the
//! configuration first, then from the environment (`PROXMOX_VE_*`). Malformed values are
//! refused at validate time with the attribute path; unknown values (during plan) are
//! accepted and checked again when known.

use std::collections::HashMap;
use std::fmt;

use waddle_proxmox::ApiToken;

/// Environment variable for `endpoint`.
pub const ENV_ENDPOINT: &str = "PROXMOX_VE_ENDPOINT";
/// Environment variable for `api_token`.
pub const ENV_API_TOKEN: &str = "PROXMOX_VE_API_TOKEN";
/// Environment variable for `insecure`.
pub const ENV_INSECURE: &str = "PROXMOX_VE_INSECURE";
/// Environment variable for `ca_cert`.
pub const ENV_CA_CERT: &str = "PROXMOX_VE_CA_CERT";
/// Environment variable for `node`.
pub const ENV_NODE: &str = "PROXMOX_VE_NODE";

/// Attribute names of the provider block.
pub mod attr {
    pub const ENDPOINT: &str = "endpoint";
    pub const API_TOKEN: &str = "api_token";
    pub const INSECURE: &str = "insecure";
    pub const CA_CERT: &str = "ca_cert";
    pub const NODE: &str = "node";
    pub const PROXY_URL: &str = "proxy_url";
}

/// Where the process environment comes from (a map in tests).
pub trait Env: Send + Sync {
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// Empty environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _key: &str) -> Option<String> {
        None
    }
}

// ---------------------------------------------------------------------------
// Pure validation of single values. Each returns a human message on error (never
// containing secret material).
// ---------------------------------------------------------------------------

/// Why a provider attribute's value (or its environment variable) is refused. The messages
/// never contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("must not be empty (omit the attribute to leave it unset)")]
    EmptyEndpoint,
    #[error("{0}")]
    Proxmox(#[source] Box<waddle_proxmox::Error>),
    #[error("endpoint {0:?} has no host")]
    NoHost(String),
    #[error("is neither PEM text nor a readable PEM file ({path}: {source})")]
    CaCertFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("must be a PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NotPem,
    #[error("is not valid PEM: {0}")]
    BadPem(String),
    #[error("certificate #{index} is not valid X.509: {reason}")]
    NotX509 { index: usize, reason: String },
    #[error("contains no certificate")]
    NoCertificate,
    #[error("must not be empty")]
    EmptyNode,
    #[error("must be at most 63 characters")]
    NodeTooLong,
    #[error("{0:?} is not a valid node name (letters, digits and '-' only)")]
    NodeCharacters(String),
    #[error("{0:?} must not start or end with '-'")]
    NodeHyphen(String),
    #[error("{url:?} is not a URL: {reason}")]
    NotAUrl { url: String, reason: String },
    #[error("{0:?}: scheme must be socks5, socks5h, http or https")]
    ProxyScheme(String),
    #[error("{0:?} has no host")]
    ProxyNoHost(String),
    #[error("{0:?}: a proxy URL has no path, query or fragment")]
    ProxyPath(String),
}

impl From<waddle_proxmox::Error> for ValueError {
    fn from(e: waddle_proxmox::Error) -> Self {
        ValueError::Proxmox(Box::new(e))
    }
}

/// A boolean environment variable that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a boolean (use true or false)")]
pub struct BoolError(pub String);

/// `endpoint`: `https://host[:port][/][api2/json]`.
pub fn validate_endpoint(s: &str) -> Result<(), ValueError> {
    if s.trim().is_empty() {
        return Err(ValueError::EmptyEndpoint);
    }
    let url = waddle_proxmox::parse_endpoint(s)?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ValueError::NoHost(s.into()));
    }
    Ok(())
}

/// `api_token`: `USER@REALM!TOKENID=SECRET`. The message never echoes the value.
pub fn validate_api_token(s: &str) -> Result<ApiToken, ValueError> {
    Ok(ApiToken::parse(s)?)
}

/// The value of `PROXMOX_VE_CA_CERT`: PEM text, or the path of a PEM file (what
/// `waddle-sandbox --env-file` and most operators' shells hold).
pub fn ca_cert_from_env(value: &str) -> Result<String, ValueError> {
    let v = value.trim();
    if v.starts_with("-----BEGIN") {
        return Ok(value.to_string());
    }
    std::fs::read_to_string(v).map_err(|source| ValueError::CaCertFile {
        path: v.into(),
        source,
    })
}

/// `ca_cert`: one or more PEM `CERTIFICATE` blocks that parse as X.509.
pub fn validate_ca_cert(s: &str) -> Result<(), ValueError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    if !s.contains("-----BEGIN CERTIFICATE-----") {
        return Err(ValueError::NotPem);
    }
    let mut count = 0;
    for item in CertificateDer::pem_slice_iter(s.as_bytes()) {
        let der = item.map_err(|e| ValueError::BadPem(e.to_string()))?;
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| ValueError::NotX509 {
            index: count + 1,
            reason: e.to_string(),
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(ValueError::NoCertificate);
    }
    Ok(())
}

/// `node`: a Proxmox VE node name (a host name label: letters, digits and '-', 1-63
/// characters, not starting or ending with '-').
pub fn validate_node(s: &str) -> Result<(), ValueError> {
    if s.is_empty() {
        return Err(ValueError::EmptyNode);
    }
    if s.len() > 63 {
        return Err(ValueError::NodeTooLong);
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ValueError::NodeCharacters(s.into()));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(ValueError::NodeHyphen(s.into()));
    }
    Ok(())
}

/// `proxy_url`: `socks5://`, `socks5h://`, `http://` or `https://` with a host.
pub fn validate_proxy_url(s: &str) -> Result<(), ValueError> {
    let u = url::Url::parse(s.trim()).map_err(|e| ValueError::NotAUrl {
        url: s.into(),
        reason: e.to_string(),
    })?;
    if !matches!(u.scheme(), "socks5" | "socks5h" | "http" | "https") {
        return Err(ValueError::ProxyScheme(s.into()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(ValueError::ProxyNoHost(s.into()));
    }
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        return Err(ValueError::ProxyPath(s.into()));
    }
    Ok(())
}

/// A boolean environment variable, as Go's `strconv.ParseBool` reads it.
pub fn parse_bool(s: &str) -> Result<bool, BoolError> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(BoolError(other.into())),
    }
}

// ---------------------------------------------------------------------------
// The resolved configuration
// ---------------------------------------------------------------------------

/// A raw attribute value as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw<T> {
    /// Not set in the configuration (null).
    Unset,
    /// Not known yet (plan).
    Unknown,
    /// A known value.
    Known(T),
}

/// The provider block as configured (before environment fallbacks).
#[derive(Clone, PartialEq, Eq)]
pub struct RawConfig {
    pub endpoint: Raw<String>,
    pub api_token: Raw<String>,
    pub insecure: Raw<bool>,
    pub ca_cert: Raw<String>,
    pub node: Raw<String>,
    pub proxy_url: Raw<String>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            endpoint: Raw::Unset,
            api_token: Raw::Unset,
            insecure: Raw::Unset,
            ca_cert: Raw::Unset,
            node: Raw::Unset,
            proxy_url: Raw::Unset,
        }
    }
}

impl fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = match &self.api_token {
            Raw::Known(_) => "Known(***)",
            Raw::Unknown => "Unknown",
            Raw::Unset => "Unset",
        };
        f.debug_struct("RawConfig")
            .field("endpoint", &self.endpoint)
            .field("api_token", &token)
            .field("insecure", &self.insecure)
            .field("ca_cert", &self.ca_cert)
            .field("node", &self.node)
            .field("proxy_url", &self.proxy_url)
            .finish()
    }
}

/// A configuration problem, attached to an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The provider attribute (`endpoint`, `api_token`, ...).
    pub attribute: &'static str,
    pub summary: String,
    pub detail: String,
}

impl ConfigIssue {
    fn new(attribute: &'static str, summary: &str, detail: impl std::fmt::Display) -> Self {
        ConfigIssue {
            attribute,
            summary: summary.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// The validated provider configuration (configuration values, then environment
/// fallbacks), shared with resources as provider data.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Proxmox VE API endpoint, e.g. `https://pve.example.com:8006`.
    pub endpoint: Option<String>,
    /// Parsed API token (its secret is redacted in `Debug`).
    pub api_token: Option<ApiToken>,
    /// Skip TLS verification of the Proxmox API.
    pub insecure: bool,
    /// PEM CA certificate(s) to trust for the Proxmox API.
    pub ca_cert: Option<String>,
    /// Default Proxmox VE node.
    pub node: Option<String>,
    /// Proxy to reach the Proxmox API (and the private network).
    pub proxy_url: Option<String>,
    /// Attributes that were unknown when the provider was configured (plan before the
    /// values they depend on exist). Resources needing them must defer their errors.
    pub unknown: Vec<&'static str>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("endpoint", &self.endpoint)
            .field("api_token", &self.api_token)
            .field("insecure", &self.insecure)
            .field("ca_cert", &self.ca_cert.as_ref().map(|_| "<pem>"))
            .field("node", &self.node)
            .field("proxy_url", &self.proxy_url)
            .field("unknown", &self.unknown)
            .finish()
    }
}

/// Errors building a Proxmox client from the provider configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("the provider attribute `{0}` is not known yet; it is needed to reach Proxmox VE")]
    Unknown(&'static str),
    #[error("the provider attribute `{attribute}` is required to manage Proxmox VE resources: set it in the provider block or with {env}")]
    Missing {
        attribute: &'static str,
        env: &'static str,
    },
    #[error(transparent)]
    Proxmox(#[from] waddle_proxmox::Error),
}

impl ProviderConfig {
    /// A client configuration for waddle-proxmox (needs `endpoint` and `api_token`).
    pub fn proxmox_client_config(&self) -> Result<waddle_proxmox::ClientConfig, ClientConfigError> {
        for a in [
            attr::ENDPOINT,
            attr::API_TOKEN,
            attr::CA_CERT,
            attr::PROXY_URL,
            attr::INSECURE,
        ] {
            if self.unknown.contains(&a) {
                return Err(ClientConfigError::Unknown(a));
            }
        }
        let endpoint = self.endpoint.clone().ok_or(ClientConfigError::Missing {
            attribute: attr::ENDPOINT,
            env: ENV_ENDPOINT,
        })?;
        let token = self.api_token.clone().ok_or(ClientConfigError::Missing {
            attribute: attr::API_TOKEN,
            env: ENV_API_TOKEN,
        })?;
        let mut c =
            waddle_proxmox::ClientConfig::new(endpoint, waddle_proxmox::Auth::ApiToken(token));
        c.insecure = self.insecure;
        c.ca_cert_pem = self.ca_cert.clone();
        c.proxy_url = self.proxy_url.clone();
        Ok(c)
    }

    /// A Proxmox VE client (no network call is made here).
    pub fn proxmox_client(&self) -> Result<waddle_proxmox::Client, ClientConfigError> {
        Ok(waddle_proxmox::Client::new(self.proxmox_client_config()?)?)
    }

    /// The node to use when a resource does not name one.
    pub fn default_node(&self) -> Option<&str> {
        self.node.as_deref()
    }
}

/// Validate the configured (known) values only: what ValidateProviderConfig checks.
/// Unknown and unset values are skipped.
pub fn validate_raw(raw: &RawConfig) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut check = |attribute: &'static str,
                     summary: &str,
                     v: &Raw<String>,
                     f: &dyn Fn(&str) -> Result<(), ValueError>| {
        if let Raw::Known(s) = v {
            if let Err(e) = f(s) {
                issues.push(ConfigIssue::new(attribute, summary, e));
            }
        }
    };
    check(
        attr::ENDPOINT,
        "Invalid Proxmox VE endpoint",
        &raw.endpoint,
        &validate_endpoint,
    );
    check(
        attr::API_TOKEN,
        "Invalid Proxmox VE API token",
        &raw.api_token,
        &|s| validate_api_token(s).map(|_| ()),
    );
    check(
        attr::CA_CERT,
        "Invalid CA certificate",
        &raw.ca_cert,
        &validate_ca_cert,
    );
    check(
        attr::NODE,
        "Invalid Proxmox VE node name",
        &raw.node,
        &validate_node,
    );
    check(
        attr::PROXY_URL,
        "Invalid proxy URL",
        &raw.proxy_url,
        &validate_proxy_url,
    );
    if raw.insecure == Raw::Known(true) && matches!(raw.ca_cert, Raw::Known(_)) {
        issues.push(ConfigIssue::new(
            attr::CA_CERT,
            "Conflicting TLS settings",
            "`ca_cert` pins the Proxmox VE CA while `insecure = true` disables verification: set one of them, not both",
        ));
    }
    issues
}

/// Resolve the configuration with environment fallbacks: what ConfigureProvider does.
/// Values from the environment are validated too (the issue names the variable).
pub fn resolve(raw: &RawConfig, env: &dyn Env) -> (ProviderConfig, Vec<ConfigIssue>) {
    let mut issues = validate_raw(raw);
    let mut cfg = ProviderConfig::default();

    // A string attribute: configuration, else environment (empty counts as unset).
    let pick = |attribute: &'static str,
                env_name: Option<&'static str>,
                v: &Raw<String>,
                unknown: &mut Vec<&'static str>|
     -> Option<(String, bool)> {
        match v {
            Raw::Known(s) => Some((s.clone(), false)),
            Raw::Unknown => {
                unknown.push(attribute);
                None
            }
            Raw::Unset => env_name
                .and_then(|n| env.var(n))
                .filter(|s| !s.trim().is_empty())
                .map(|s| (s, true)),
        }
    };
    let mut unknown = Vec::new();
    let config_ok =
        |a: &'static str, issues: &[ConfigIssue]| !issues.iter().any(|i| i.attribute == a);

    let from_env_issue =
        |attribute: &'static str, env_name: &str, summary: &str, e: &dyn std::fmt::Display| {
            ConfigIssue::new(
                attribute,
                summary,
                format!("{e} (from the environment variable {env_name})"),
            )
        };

    if let Some((s, from_env)) = pick(
        attr::ENDPOINT,
        Some(ENV_ENDPOINT),
        &raw.endpoint,
        &mut unknown,
    ) {
        if from_env {
            if let Err(e) = validate_endpoint(&s) {
                issues.push(from_env_issue(
                    attr::ENDPOINT,
                    ENV_ENDPOINT,
                    "Invalid Proxmox VE endpoint",
                    &e,
                ));
            } else {
                cfg.endpoint = Some(s.trim().to_string());
            }
        } else if config_ok(attr::ENDPOINT, &issues) {
            cfg.endpoint = Some(s.trim().to_string());
        }
    }
    if let Some((s, from_env)) = pick(
        attr::API_TOKEN,
        Some(ENV_API_TOKEN),
        &raw.api_token,
        &mut unknown,
    ) {
        match validate_api_token(s.trim()) {
            Ok(t) => cfg.api_token = Some(t),
            Err(e) if from_env => issues.push(from_env_issue(
                attr::API_TOKEN,
                ENV_API_TOKEN,
                "Invalid Proxmox VE API token",
                &e,
            )),
            Err(_) => {} // already reported by validate_raw
        }
    }
    if let Some((s, from_env)) = pick(attr::CA_CERT, Some(ENV_CA_CERT), &raw.ca_cert, &mut unknown)
    {
        if from_env {
            match ca_cert_from_env(&s).and_then(|pem| validate_ca_cert(&pem).map(|()| pem)) {
                Ok(pem) => cfg.ca_cert = Some(pem),
                Err(e) => issues.push(from_env_issue(
                    attr::CA_CERT,
                    ENV_CA_CERT,
                    "Invalid CA certificate",
                    &e,
                )),
            }
        } else if config_ok(attr::CA_CERT, &issues) {
            cfg.ca_cert = Some(s);
        }
    }
    if let Some((s, from_env)) = pick(attr::NODE, Some(ENV_NODE), &raw.node, &mut unknown) {
        let s = s.trim().to_string();
        if from_env {
            if let Err(e) = validate_node(&s) {
                issues.push(from_env_issue(
                    attr::NODE,
                    ENV_NODE,
                    "Invalid Proxmox VE node name",
                    &e,
                ));
            } else {
                cfg.node = Some(s);
            }
        } else if config_ok(attr::NODE, &issues) {
            cfg.node = Some(s);
        }
    }
    if let Some((s, _)) = pick(attr::PROXY_URL, None, &raw.proxy_url, &mut unknown) {
        if config_ok(attr::PROXY_URL, &issues) {
            cfg.proxy_url = Some(s.trim().to_string());
        }
    }
    match &raw.insecure {
        Raw::Known(b) => cfg.insecure = *b,
        Raw::Unknown => unknown.push(attr::INSECURE),
        Raw::Unset => {
            if let Some(s) = env.var(ENV_INSECURE).filter(|s| !s.trim().is_empty()) {
                match parse_bool(&s) {
                    Ok(b) => cfg.insecure = b,
                    Err(e) => issues.push(from_env_issue(
                        attr::INSECURE,
                        ENV_INSECURE,
                        "Invalid insecure setting",
                        &e,
                    )),
                }
            }
        }
    }
    // The conflict check again, now that environment values are in (skip when both
    // came from the configuration: validate_raw reported that one already).
    let both_configured = raw.insecure == Raw::Known(true) && matches!(raw.ca_cert, Raw::Known(_));
    if cfg.insecure && cfg.ca_cert.is_some() && !both_configured {
        issues.push(ConfigIssue::new(
            attr::CA_CERT,
            "Conflicting TLS settings",
            format!(
                "a CA certificate is pinned (`ca_cert` or {ENV_CA_CERT}) while TLS verification is disabled (`insecure` or {ENV_INSECURE}): set one of them, not both"
            ),
        ));
    }
    cfg.unknown = unknown;
    (cfg, issues)
}

// ---------------------------------------------------------------------------
// The provider (framework wiring)
// ---------------------------------------------------------------------------

use std::sync::Arc;

use waddle_framework::prelude::*;

/// Provider type name.
pub const PROVIDER_NAME: &str = "waddle";

/// The `waddle` provider.
#[derive(Clone)]
pub struct WaddleProvider {
    env: Arc<dyn Env>,
}

impl Default for WaddleProvider {
    fn default() -> Self {
        WaddleProvider::new()
    }
}

impl fmt::Debug for WaddleProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaddleProvider").finish_non_exhaustive()
    }
}

impl WaddleProvider {
    /// The provider reading fallbacks from the process environment.
    pub fn new() -> Self {
        Self::with_env(ProcessEnv)
    }

    /// The provider reading fallbacks from `env` (tests).
    pub fn with_env(env: impl Env + 'static) -> Self {
        // Resources build reqwest clients (reqwest uses rustls-no-provider): make sure ring is
        // the process's default rustls crypto provider, also when driven in process.
        waddle_proxmox::install_crypto_provider();
        WaddleProvider { env: Arc::new(env) }
    }
}

/// The provider block schema.
pub fn schema() -> Schema {
    Schema::new(
        "The waddle provider stands up the waddle.social platform on Proxmox VE. Every \
         setting is optional: offline features such as the `waddle_talos_image` data source and \
         the `talos_schematic_id` function work with an empty `provider \"waddle\" {}` block. \
         Settings not given in the block are read from `PROXMOX_VE_*` environment variables.",
    )
    .attribute(
        attr::ENDPOINT,
        Attribute::string().optional().description(format!(
            "Proxmox VE API endpoint, `https://HOST[:PORT]` (e.g. `https://pve.example.com:8006`; a \
             trailing `/` or `/api2/json` is accepted). Must use `https`. Defaults to the `{ENV_ENDPOINT}` \
             environment variable; unset otherwise."
        )),
    )
    .attribute(
        attr::API_TOKEN,
        Attribute::string().optional().sensitive().description(format!(
            "Proxmox VE API token, `USER@REALM!TOKENID=SECRET` (e.g. `terraform@pve!waddle=<uuid>`). \
             Sensitive. Defaults to the `{ENV_API_TOKEN}` environment variable; unset otherwise."
        )),
    )
    .attribute(
        attr::INSECURE,
        Attribute::bool().optional().description(format!(
            "Skip TLS certificate verification of the Proxmox VE API. Prefer `ca_cert`; the two are \
             mutually exclusive. Defaults to the `{ENV_INSECURE}` environment variable \
             (`true`/`false`/`1`/`0`), else `false`."
        )),
    )
    .attribute(
        attr::CA_CERT,
        Attribute::string().optional().description(format!(
            "PEM-encoded CA certificate(s) to trust for the Proxmox VE API, e.g. the cluster CA \
             `/etc/pve/pve-root-ca.pem` of a self-signed installation. When set, only these CAs are \
             trusted. Defaults to the `{ENV_CA_CERT}` environment variable (PEM text or the path of \
             a PEM file); unset otherwise (the system trust store is used)."
        )),
    )
    .attribute(
        attr::NODE,
        Attribute::string().optional().description(format!(
            "Default Proxmox VE node name for resources that do not name one (e.g. `pve`). \
             Defaults to the `{ENV_NODE}` environment variable; unset otherwise."
        )),
    )
    .attribute(
        attr::PROXY_URL,
        Attribute::string().optional().description(
            "Proxy used to reach the Proxmox VE API and the private network behind it: \
             `socks5://`, `socks5h://`, `http://` or `https://` URL with a host (e.g. \
             `socks5h://127.0.0.1:1080`). Unset by default (direct connections).",
        ),
    )
}

fn raw_string(config: &Value, name: &str) -> Raw<String> {
    match config.get_attr(name) {
        None => Raw::Unset,
        Some(v) if v.is_unknown() => Raw::Unknown,
        Some(v) => match v.as_str() {
            Some(s) => Raw::Known(s.to_string()),
            None => Raw::Unset,
        },
    }
}

/// Read the provider block value into a [`RawConfig`].
pub fn raw_config(config: &Value) -> RawConfig {
    RawConfig {
        endpoint: raw_string(config, attr::ENDPOINT),
        api_token: raw_string(config, attr::API_TOKEN),
        insecure: match config.get_attr(attr::INSECURE) {
            Some(v) if v.is_unknown() => Raw::Unknown,
            Some(v) => v.as_bool().map(Raw::Known).unwrap_or(Raw::Unset),
            None => Raw::Unset,
        },
        ca_cert: raw_string(config, attr::CA_CERT),
        node: raw_string(config, attr::NODE),
        proxy_url: raw_string(config, attr::PROXY_URL),
    }
}

fn push_issues(diags: &mut Diagnostics, issues: Vec<ConfigIssue>) {
    for i in issues {
        diags.error_at(AttributePath::attr(i.attribute), i.summary, i.detail);
    }
}

#[async_trait]
impl Provider for WaddleProvider {
    fn type_name(&self) -> &str {
        PROVIDER_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn validate_config(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        push_issues(diags, validate_raw(&raw_config(config)));
    }

    async fn configure(
        &self,
        _ctx: &Context,
        config: &Value,
        diags: &mut Diagnostics,
    ) -> Option<ProviderData> {
        let (cfg, issues) = resolve(&raw_config(config), self.env.as_ref());
        push_issues(diags, issues);
        if diags.has_errors() {
            return None;
        }
        Some(Arc::new(cfg))
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        // Every plan first checks the token's privileges (crate::preflight).
        crate::resources::all()
            .into_iter()
            .map(crate::preflight::wrap)
            .collect()
    }

    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        vec![Arc::new(crate::data_sources::talos_image::TalosImage)]
    }

    fn functions(&self) -> Vec<Arc<dyn Function>> {
        vec![Arc::new(
            crate::functions::talos_schematic_id::TalosSchematicId,
        )]
    }

    fn ephemeral_resources(&self) -> Vec<Arc<dyn EphemeralResource>> {
        vec![Arc::new(
            crate::ephemeral::talos_kubeconfig::TalosKubeconfig,
        )]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate PEM for tests.
    pub(crate) fn test_ca_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["pve.test".to_string()])
            .unwrap()
            .cert
            .pem()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const TOKEN: &str = "terraform@pve!waddle=0b5c1c52-1e8b-4b8a-9d1e-0d6a9a1f2c3d";

    #[test]
    fn endpoints() {
        for ok in [
            "https://pve.example.com:8006",
            "https://127.10.0.1:8006/",
            "https://pve:8006/api2/json",
        ] {
            assert!(validate_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "  ",
            "pve:8006",
            "http://pve:8006",
            "ftp://x",
            "https://",
        ] {
            assert!(validate_endpoint(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_tokens_never_echo_the_secret() {
        let t = validate_api_token(TOKEN).unwrap();
        assert_eq!(t.user, "terraform@pve");
        assert_eq!(t.token_id, "waddle");
        assert!(!format!("{t:?}").contains("0b5c1c52"));
        for bad in [
            "terraform@pve!waddle",
            "terraform@pve=secret",
            "terraform!waddle=secret",
            "@pve!waddle=secret",
            "terraform@pve!=secret",
            "terraform@pve!waddle=",
            "terraform@pve!wad dle=s3cr3tvalue",
        ] {
            let e = validate_api_token(bad).unwrap_err().to_string();
            assert!(!e.contains("s3cr3tvalue"), "{e}");
        }
    }

    #[test]
    fn ca_certs() {
        let pem = test_ca_pem();
        assert!(validate_ca_cert(&pem).is_ok());
        assert!(validate_ca_cert(&format!("{pem}{pem}")).is_ok());
        assert!(validate_ca_cert("not a pem").is_err());
        assert!(
            validate_ca_cert("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(validate_ca_cert("-----BEGIN CERTIFICATE-----\n").is_err());
    }

    #[test]
    fn nodes_and_proxies() {
        for ok in ["pve", "pve-01", "node1"] {
            assert!(validate_node(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-pve",
            "pve-",
            "pve_01",
            "pve.example.com",
            &"a".repeat(64),
        ] {
            assert!(validate_node(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "socks5://127.0.0.1:1080",
            "socks5h://proxy:1080",
            "http://proxy:3128",
            "https://user:pw@proxy:3128/",
        ] {
            assert!(validate_proxy_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "proxy:1080",
            "ftp://proxy",
            "socks4://p:1",
            "http://p:1/path",
            "socks5://",
        ] {
            assert!(validate_proxy_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("true"), Ok(true));
        assert_eq!(parse_bool("1"), Ok(true));
        assert_eq!(parse_bool("False"), Ok(false));
        assert!(parse_bool("yes").is_err());
    }

    #[test]
    fn empty_config_resolves_to_nothing() {
        let (cfg, issues) = resolve(&RawConfig::default(), &NoEnv);
        assert!(issues.is_empty());
        assert_eq!(cfg, ProviderConfig::default());
        assert!(matches!(
            cfg.proxmox_client_config(),
            Err(ClientConfigError::Missing {
                attribute: "endpoint",
                ..
            })
        ));
    }

    #[test]
    fn validate_reports_each_bad_attribute() {
        let raw = RawConfig {
            endpoint: Raw::Known("pve:8006".into()),
            api_token: Raw::Known("nope".into()),
            insecure: Raw::Known(true),
            ca_cert: Raw::Known("junk".into()),
            node: Raw::Known("bad_node".into()),
            proxy_url: Raw::Known("ftp://x".into()),
        };
        let attrs: Vec<&str> = validate_raw(&raw).iter().map(|i| i.attribute).collect();
        assert_eq!(
            attrs,
            vec![
                "endpoint",
                "api_token",
                "ca_cert",
                "node",
                "proxy_url",
                "ca_cert"
            ]
        );
    }

    #[test]
    fn unknown_values_are_accepted_and_recorded() {
        let raw = RawConfig {
            endpoint: Raw::Unknown,
            api_token: Raw::Known(TOKEN.into()),
            ..Default::default()
        };
        assert!(validate_raw(&raw).is_empty());
        let (cfg, issues) = resolve(&raw, &env(&[(ENV_ENDPOINT, "https://ignored:8006")]));
        assert!(issues.is_empty());
        assert_eq!(
            cfg.endpoint, None,
            "an unknown value does not fall back to env"
        );
        assert_eq!(cfg.unknown, vec!["endpoint"]);
        assert!(matches!(
            cfg.proxmox_client_config(),
            Err(ClientConfigError::Unknown("endpoint"))
        ));
    }

    #[test]
    fn ca_cert_env_accepts_a_pem_file_path() {
        let pem = test_ca_pem();
        let dir = std::env::temp_dir().join(format!("waddle-ca-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, &pem).unwrap();
        let e = env(&[(ENV_CA_CERT, path.to_str().unwrap())]);
        let (cfg, issues) = resolve(&RawConfig::default(), &e);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(cfg.ca_cert.as_deref(), Some(pem.as_str()));

        // A path that does not exist is an error naming the variable, not a silent skip.
        let missing = dir.join("missing.pem");
        let e = env(&[(ENV_CA_CERT, missing.to_str().unwrap())]);
        let (cfg, issues) = resolve(&RawConfig::default(), &e);
        assert!(cfg.ca_cert.is_none());
        let text = format!("{issues:?}");
        assert!(
            text.contains(ENV_CA_CERT) && text.contains("missing.pem"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn environment_fallbacks_and_precedence() {
        let pem = test_ca_pem();
        let e = env(&[
            (ENV_ENDPOINT, "https://env-pve:8006"),
            (ENV_API_TOKEN, TOKEN),
            (ENV_INSECURE, ""),
            (ENV_CA_CERT, pem.as_str()),
            (ENV_NODE, "pve"),
        ]);
        let (cfg, issues) = resolve(&RawConfig::default(), &e);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(cfg.endpoint.as_deref(), Some("https://env-pve:8006"));
        assert_eq!(cfg.api_token.as_ref().unwrap().token_id, "waddle");
        assert_eq!(cfg.ca_cert.as_deref(), Some(pem.as_str()));
        assert_eq!(cfg.node.as_deref(), Some("pve"));
        assert!(!cfg.insecure);
        let client = cfg.proxmox_client_config().unwrap();
        assert_eq!(client.endpoint, "https://env-pve:8006");
        assert_eq!(client.ca_cert_pem.as_deref(), Some(pem.as_str()));

        // Configuration wins over the environment.
        let raw = RawConfig {
            endpoint: Raw::Known("https://cfg-pve:8006".into()),
            node: Raw::Known("pve2".into()),
            ..Default::default()
        };
        let (cfg, issues) = resolve(&raw, &e);
        assert!(issues.is_empty());
        assert_eq!(cfg.endpoint.as_deref(), Some("https://cfg-pve:8006"));
        assert_eq!(cfg.node.as_deref(), Some("pve2"));
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let e = env(&[
            (ENV_ENDPOINT, "http://plain:8006"),
            (ENV_API_TOKEN, "garbage-s3cr3t"),
            (ENV_INSECURE, "maybe"),
            (ENV_NODE, "no_underscores"),
            (
                ENV_CA_CERT,
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
        ]);
        let (_, issues) = resolve(&RawConfig::default(), &e);
        let got: Vec<(&str, bool)> = issues
            .iter()
            .map(|i| (i.attribute, i.detail.contains("PROXMOX_VE_")))
            .collect();
        assert_eq!(
            got,
            vec![
                ("endpoint", true),
                ("api_token", true),
                ("ca_cert", true),
                ("node", true),
                ("insecure", true)
            ]
        );
        assert!(issues.iter().all(|i| !i.detail.contains("s3cr3t")));
    }

    #[test]
    fn insecure_with_ca_cert_conflicts() {
        let pem = test_ca_pem();
        let raw = RawConfig {
            ca_cert: Raw::Known(pem.clone()),
            ..Default::default()
        };
        let (_, issues) = resolve(&raw, &env(&[(ENV_INSECURE, "true")]));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].attribute, "ca_cert");
        let raw = RawConfig {
            ca_cert: Raw::Known(pem),
            insecure: Raw::Known(true),
            ..Default::default()
        };
        let (_, issues) = resolve(&raw, &NoEnv);
        assert_eq!(issues.len(), 1, "reported once: {issues:?}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let (cfg, _) = resolve(
            &RawConfig {
                api_token: Raw::Known(TOKEN.into()),
                ..Default::default()
            },
            &NoEnv,
        );
        let s = format!("{cfg:?}");
        assert!(s.contains("terraform@pve"));
        assert!(!s.contains("0b5c1c52"), "{s}");
        let raw = RawConfig {
            api_token: Raw::Known(TOKEN.into()),
            ..Default::default()
        };
        assert!(!format!("{raw:?}").contains("0b5c1c52"));
    }

    fn block(attrs: &[(&str, Value)]) -> Value {
        let mut v = schema().null_value();
        for (k, val) in attrs {
            assert!(v.set_path(&AttributePath::attr(*k), val.clone()));
        }
        v
    }

    #[test]
    fn provider_schema_is_documented() {
        let s = schema();
        assert!(s.check().is_empty(), "{}", s.check());
        for (name, a) in &s.block.attributes {
            assert!(a.optional && !a.required, "{name} must be optional");
            assert!(!a.description.is_empty(), "{name}");
        }
        assert!(s.block.attributes[attr::API_TOKEN].sensitive);
        assert!(s.block.attributes[attr::INSECURE]
            .description
            .contains("`false`"));
    }

    #[tokio::test]
    async fn framework_validate_and_configure() {
        let p = WaddleProvider::with_env(NoEnv);
        let ctx = Context::default();
        // Empty block: fine, configured with nothing.
        let mut d = Diagnostics::new();
        p.validate_config(&ctx, &schema().null_value(), &mut d)
            .await;
        assert!(d.is_empty());
        let data = p
            .configure(&ctx, &schema().null_value(), &mut d)
            .await
            .expect("data");
        let cfg = data.downcast_ref::<ProviderConfig>().unwrap();
        assert_eq!(cfg, &ProviderConfig::default());

        // Bad values: errors at attribute paths.
        let bad = block(&[
            (attr::ENDPOINT, Value::from("http://pve:8006")),
            (attr::PROXY_URL, Value::from("gopher://x")),
            (attr::NODE, Value::unknown()),
        ]);
        let mut d = Diagnostics::new();
        p.validate_config(&ctx, &bad, &mut d).await;
        let paths: Vec<String> = d
            .errors()
            .map(|e| e.attribute.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(paths, vec!["endpoint", "proxy_url"]);
        let mut d = Diagnostics::new();
        assert!(p.configure(&ctx, &bad, &mut d).await.is_none());
        assert!(d.has_errors());

        // Good values.
        let good = block(&[
            (attr::ENDPOINT, Value::from("https://127.10.0.1:8006")),
            (attr::API_TOKEN, Value::from(TOKEN)),
            (attr::INSECURE, Value::Bool(true)),
            (attr::NODE, Value::from("pve")),
        ]);
        let mut d = Diagnostics::new();
        let data = p.configure(&ctx, &good, &mut d).await.unwrap();
        assert!(d.is_empty(), "{d}");
        let cfg = data.downcast_ref::<ProviderConfig>().unwrap();
        assert!(cfg.insecure);
        assert_eq!(cfg.default_node(), Some("pve"));
        assert!(cfg.proxmox_client().is_ok());
    }
}
