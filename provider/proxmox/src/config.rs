//! Client configuration: endpoint, credentials, TLS trust, proxy, limits, timeouts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::record::RequestRecorder;
use crate::retry::RetryPolicy;

/// A secret string (API token secret, password, ticket). `Debug` and `Display` never show the
/// value; use [`Secret::expose`] where it must go on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

/// A parsed API token `USER@REALM!TOKENID=SECRET`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// `user@realm`
    pub user: String,
    /// token id (after `!`)
    pub token_id: String,
    secret: Secret,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("user", &self.user)
            .field("token_id", &self.token_id)
            .field("secret", &self.secret)
            .finish()
    }
}

fn valid_token_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ApiToken {
    /// Parse `USER@REALM!TOKENID=SECRET`. The error message never contains the secret.
    pub fn parse(full: &str) -> Result<Self, Error> {
        let err = |why: &str| {
            Error::Config(format!(
                "API token must have the form USER@REALM!TOKENID=SECRET: {why}"
            ))
        };
        let (id, secret) = full.split_once('=').ok_or_else(|| err("missing '='"))?;
        let (user, token_id) = id.split_once('!').ok_or_else(|| err("missing '!'"))?;
        let (name, realm) = user
            .rsplit_once('@')
            .ok_or_else(|| err("missing '@REALM'"))?;
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains(':') {
            return Err(err("invalid user name"));
        }
        if !valid_token_part(realm) {
            return Err(err("invalid realm"));
        }
        if !valid_token_part(token_id) {
            return Err(err("invalid token id"));
        }
        if secret.is_empty() || secret.contains(char::is_whitespace) {
            return Err(err("empty or malformed secret"));
        }
        Ok(ApiToken {
            user: user.to_string(),
            token_id: token_id.to_string(),
            secret: Secret::new(secret),
        })
    }

    /// The value of the `Authorization` header.
    pub(crate) fn header_value(&self) -> String {
        format!(
            "PVEAPIToken={}!{}={}",
            self.user,
            self.token_id,
            self.secret.expose()
        )
    }
}

/// How the client authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    /// API token (`Authorization: PVEAPIToken=...` header on every request, no CSRF token).
    ApiToken(ApiToken),
    /// Username and password: `POST /access/ticket`, then the `PVEAuthCookie` cookie on every
    /// request and the `CSRFPreventionToken` header on every non-GET. The ticket is renewed
    /// after 90 minutes and whenever the API answers 401.
    Password {
        /// `user@realm`, e.g. `root@pam`.
        username: String,
        /// The password.
        password: Secret,
    },
}

impl Auth {
    /// Parse an API token string `USER@REALM!TOKENID=SECRET`.
    pub fn api_token(full: &str) -> Result<Self, Error> {
        Ok(Auth::ApiToken(ApiToken::parse(full)?))
    }

    /// Username/password credentials.
    pub fn password(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Auth::Password {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// Timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect timeout.
    pub connect: Duration,
    /// Whole-request timeout for ordinary API calls.
    pub request: Duration,
    /// Whole-request timeout for uploads (ISO upload).
    pub upload: Duration,
    /// How long a pooled keep-alive connection may stay idle. Proxmox closes idle connections
    /// after 5 s, so this must stay below that; values >= 5 s are clamped to 4 s.
    pub pool_idle: Duration,
    /// Default deadline for waiting on a worker task.
    pub task: Duration,
    /// How long the API may refuse (or fail) every connection before calls fail with
    /// [`crate::Error::Unreachable`] instead of being retried, by the client or by waits.
    pub unreachable: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
            upload: Duration::from_secs(600),
            pool_idle: Duration::from_secs(3),
            task: Duration::from_secs(1800),
            unreachable: Duration::from_secs(60),
        }
    }
}

/// Client configuration.
///
/// TLS trust is decided as follows (in this order):
/// * `insecure = true` (explicit opt-in): the server certificate is not verified at all.
/// * `ca_cert_pem = Some(..)`: the certificates in that PEM are the **only** trust anchors
///   (the system roots are *not* consulted), and the host name must still match the
///   certificate. This is the right choice for Proxmox's self-signed cluster CA
///   (`/etc/pve/pve-root-ca.pem`).
/// * otherwise: the platform's trust store (for endpoints with a publicly trusted
///   certificate, e.g. ACME).
#[derive(Clone)]
pub struct ClientConfig {
    /// `https://host:8006` (a trailing `/` or `/api2/json` is accepted and normalised).
    pub endpoint: String,
    /// Credentials.
    pub auth: Auth,
    /// Skip certificate verification (explicit opt-in only).
    pub insecure: bool,
    /// PEM with the CA certificate(s) to pin.
    pub ca_cert_pem: Option<String>,
    /// Optional proxy, `socks5://`, `socks5h://`, `http://` or `https://`.
    pub proxy_url: Option<String>,
    /// Maximum concurrent mutating operations (create/delete/start ...) per PVE node,
    /// enforced by the high-level helpers that hold a node permit across the API call and
    /// its task. Default 4.
    pub per_node_concurrency: usize,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retry policy for transient errors.
    pub retry: RetryPolicy,
    /// Optional hook called for every HTTP exchange (see [`RequestRecorder`]).
    pub recorder: Option<Arc<dyn RequestRecorder>>,
    /// Local address connections are made from (default: the one the OS routes from).
    pub local_address: Option<std::net::IpAddr>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("insecure", &self.insecure)
            .field("ca_cert_pem", &self.ca_cert_pem.as_ref().map(|_| "<pem>"))
            .field("proxy_url", &self.proxy_url)
            .field("per_node_concurrency", &self.per_node_concurrency)
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .field("recorder", &self.recorder.as_ref().map(|_| "<hook>"))
            .field("local_address", &self.local_address)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration with defaults: TLS verification on, no proxy, 4 mutating operations
    /// per node, default timeouts and retry policy.
    pub fn new(endpoint: impl Into<String>, auth: Auth) -> Self {
        ClientConfig {
            endpoint: endpoint.into(),
            auth,
            insecure: false,
            ca_cert_pem: None,
            proxy_url: None,
            per_node_concurrency: 4,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            recorder: None,
            local_address: None,
        }
    }

    /// Validate and normalise the endpoint to its API base URL
    /// (`https://host:port/api2/json`).
    pub fn api_base(&self) -> Result<url::Url, Error> {
        parse_endpoint(&self.endpoint)
    }
}

/// Validate an endpoint (`https://host[:port][/][api2/json]`) and return the API base URL.
pub fn parse_endpoint(endpoint: &str) -> Result<url::Url, Error> {
    let url = url::Url::parse(endpoint.trim())
        .map_err(|e| Error::Config(format!("endpoint {endpoint:?} is not a valid URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(Error::Config(format!(
            "endpoint {endpoint:?} must use https:// (Proxmox VE serves its API over TLS)"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::Config(format!("endpoint {endpoint:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config(
            "endpoint must not contain credentials; use the token or password settings".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(format!(
            "endpoint {endpoint:?} must not have a query or fragment"
        )));
    }
    let path = url.path().trim_end_matches('/');
    if !(path.is_empty() || path == "/api2/json") {
        return Err(Error::Config(format!(
            "endpoint {endpoint:?} must be https://HOST:PORT (optionally ending in /api2/json)"
        )));
    }
    let mut base = url.clone();
    base.set_path("/api2/json");
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parse_and_redaction() {
        let t = ApiToken::parse("waddle@pve!ci=0b1e7c5e-aaaa-bbbb-cccc-1234567890ab").unwrap();
        assert_eq!(t.user, "waddle@pve");
        assert_eq!(t.token_id, "ci");
        assert_eq!(
            t.header_value(),
            "PVEAPIToken=waddle@pve!ci=0b1e7c5e-aaaa-bbbb-cccc-1234567890ab"
        );
        let dbg = format!("{:?}", Auth::ApiToken(t));
        assert!(!dbg.contains("0b1e7c5e"), "{dbg}");
        assert!(dbg.contains("***"));
        let p = Auth::password("root@pam", "hunter2-secret");
        assert!(!format!("{p:?}").contains("hunter2"));
        for bad in [
            "root@pam",
            "root@pam!tok",
            "root!tok=s",
            "root@pam!=s",
            "root@pam!tok=",
            "@pam!tok=s",
            "root@pam!to k=s",
        ] {
            let e = ApiToken::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("=s"), "secret leaked: {e}");
        }
        assert!(ApiToken::parse("a@b!c=SECRET x").is_err());
    }

    #[test]
    fn config_debug_hides_secrets() {
        let mut c = ClientConfig::new(
            "https://pve:8006",
            Auth::api_token("root@pam!t=supersecretvalue").unwrap(),
        );
        c.ca_cert_pem = Some("-----BEGIN CERTIFICATE-----".into());
        let d = format!("{c:?}");
        assert!(!d.contains("supersecretvalue"));
        assert!(!d.contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn endpoint_normalisation() {
        for ok in [
            "https://pve.example:8006",
            "https://pve.example:8006/",
            "https://pve.example:8006/api2/json",
            "https://pve.example:8006/api2/json/",
        ] {
            assert_eq!(
                parse_endpoint(ok).unwrap().as_str(),
                "https://pve.example:8006/api2/json",
                "{ok}"
            );
        }
        assert_eq!(
            parse_endpoint("https://127.10.0.1:8006").unwrap().as_str(),
            "https://127.10.0.1:8006/api2/json"
        );
        for bad in [
            "http://pve:8006",
            "pve:8006",
            "https://",
            "https://u:p@pve:8006",
            "https://pve:8006/foo",
            "https://pve:8006/?x=1",
            "",
        ] {
            assert!(parse_endpoint(bad).is_err(), "accepted {bad:?}");
        }
    }
}
