//! What `/webapi/ping` says about authentication: the provider checks that the proxy answers
//! with auth type `github` and the configured connector.

use serde::Deserialize;

#[derive(Deserialize)]
struct Ping {
    auth: Auth,
    #[serde(default)]
    server_version: String,
}

#[derive(Deserialize)]
struct Auth {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    github: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// Why a ping answer is not the expected one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    #[error("/webapi/ping answered something that is not a ping response: {0}")]
    Parse(String),
    #[error("/webapi/ping reports auth type {0:?}, expected \"github\"")]
    AuthType(String),
    #[error("/webapi/ping reports GitHub connector {found:?}, expected {expected:?}")]
    Connector { found: String, expected: String },
}

/// Check a `/webapi/ping` body; the server version on success.
pub fn check_ping(body: &str, connector: &str) -> Result<String, PingError> {
    let p: Ping = serde_json::from_str(body).map_err(|e| PingError::Parse(e.to_string()))?;
    if p.auth.kind != "github" {
        return Err(PingError::AuthType(p.auth.kind));
    }
    let found = p.auth.github.map(|g| g.name).unwrap_or_default();
    if found != connector {
        return Err(PingError::Connector {
            found,
            expected: connector.into(),
        });
    }
    Ok(p.server_version)
}
