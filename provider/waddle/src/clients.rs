//! API clients built from the provider configuration, shared by the resources.
//!
//! [`proxmox`] turns the configured [`ProviderConfig`] (provider data) into a
//! [`waddle_proxmox::Client`]. Clients are cached per configuration, so every resource
//! instance of one provider process shares one connection pool, one per-node concurrency
//! limit and one download/upload de-duplication table.
//!
//! Configuration problems become error diagnostics naming the provider attribute and its
//! environment variable (the diagnostic has no attribute path: resource diagnostics point into
//! the resource block, not the provider block).

use std::sync::{Mutex, OnceLock};

use waddle_framework::prelude::*;

use crate::provider::{attr, ClientConfigError, ProviderConfig};

fn cache() -> &'static Mutex<Vec<(ProviderConfig, waddle_proxmox::Client)>> {
    static CACHE: OnceLock<Mutex<Vec<(ProviderConfig, waddle_proxmox::Client)>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Vec::new()))
}

/// The provider attribute a client construction error is about.
pub fn attribute_of(err: &ClientConfigError) -> &'static str {
    match err {
        ClientConfigError::Unknown(a) => a,
        ClientConfigError::Missing { attribute, .. } => attribute,
        // waddle-proxmox starts each configuration message with the setting it is about; a
        // word merely appearing in a value (an endpoint host named `proxy...`) decides nothing.
        ClientConfigError::Proxmox(waddle_proxmox::Error::Config(m)) => {
            let about = |prefixes: &[&str]| prefixes.iter().any(|p| m.starts_with(p));
            if about(&["proxy_url"]) {
                attr::PROXY_URL
            } else if about(&["ca_cert", "insecure"]) {
                attr::CA_CERT
            } else if about(&["API token", "username"]) {
                attr::API_TOKEN
            } else {
                attr::ENDPOINT
            }
        }
        ClientConfigError::Proxmox(_) => attr::ENDPOINT,
    }
}

/// A Proxmox VE client for `cfg` (cached).
pub fn proxmox_for(cfg: &ProviderConfig) -> Result<waddle_proxmox::Client, ClientConfigError> {
    if let Ok(c) = cache().lock() {
        if let Some((_, client)) = c.iter().find(|(k, _)| k == cfg) {
            return Ok(client.clone());
        }
    }
    let client = cfg.proxmox_client()?;
    if let Ok(mut c) = cache().lock() {
        if c.len() > 16 {
            c.remove(0);
        }
        c.push((cfg.clone(), client.clone()));
    }
    Ok(client)
}

/// The provider configuration and a Proxmox VE client, or an error diagnostic.
pub fn proxmox(
    ctx: &Context,
    diags: &mut Diagnostics,
) -> Option<(ProviderConfig, waddle_proxmox::Client)> {
    let cfg = ctx.require_provider_data::<ProviderConfig>(diags)?.clone();
    match proxmox_for(&cfg) {
        Ok(c) => Some((cfg, c)),
        Err(e) => {
            let a = attribute_of(&e);
            diags.error(
                "Proxmox VE client not configured",
                format!("provider \"waddle\" attribute `{a}`: {e}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_settings_name_the_provider_attribute() {
        let cfg = ProviderConfig::default();
        let e = proxmox_for(&cfg).unwrap_err();
        assert_eq!(attribute_of(&e), attr::ENDPOINT);
        assert!(e.to_string().contains("PROXMOX_VE_ENDPOINT"), "{e}");
        let cfg = ProviderConfig {
            endpoint: Some("https://127.10.0.1:8006".into()),
            ..Default::default()
        };
        let e = proxmox_for(&cfg).unwrap_err();
        assert_eq!(attribute_of(&e), attr::API_TOKEN);
        let cfg = ProviderConfig {
            unknown: vec![attr::ENDPOINT],
            ..Default::default()
        };
        assert_eq!(
            attribute_of(&proxmox_for(&cfg).unwrap_err()),
            attr::ENDPOINT
        );
    }

    #[test]
    fn a_proxy_is_blamed_only_when_one_is_configured() {
        let token = waddle_proxmox::ApiToken::parse("root@pam!waddle=secret-value").unwrap();
        let cfg = ProviderConfig {
            endpoint: Some("http://proxy.example.org:8006".into()),
            api_token: Some(token.clone()),
            insecure: true,
            ..Default::default()
        };
        let e = proxmox_for(&cfg).unwrap_err();
        assert_eq!(attribute_of(&e), attr::ENDPOINT, "{e}");
        let cfg = ProviderConfig {
            endpoint: Some("https://127.10.0.1:8006".into()),
            api_token: Some(token.clone()),
            insecure: true,
            proxy_url: Some("ftp://127.0.0.1:21".into()),
            ..Default::default()
        };
        let e = proxmox_for(&cfg).unwrap_err();
        assert_eq!(attribute_of(&e), attr::PROXY_URL, "{e}");
        let cfg = ProviderConfig {
            endpoint: Some("https://127.10.0.1:8006".into()),
            api_token: Some(token),
            ca_cert: Some("not a certificate".into()),
            ..Default::default()
        };
        let e = proxmox_for(&cfg).unwrap_err();
        assert_eq!(attribute_of(&e), attr::CA_CERT, "{e}");
    }

    #[test]
    fn clients_are_cached_per_configuration() {
        let cfg = ProviderConfig {
            endpoint: Some("https://127.10.0.1:8006".into()),
            api_token: Some(
                waddle_proxmox::ApiToken::parse("root@pam!waddle=secret-value").unwrap(),
            ),
            insecure: true,
            ..Default::default()
        };
        let a = proxmox_for(&cfg).unwrap();
        let b = proxmox_for(&cfg).unwrap();
        assert_eq!(a.base_url(), b.base_url());
        let mut other = cfg.clone();
        other.endpoint = Some("https://127.10.0.2:8006".into());
        let c = proxmox_for(&other).unwrap();
        assert_ne!(a.base_url(), c.base_url());
        let mut ctx_diags = Diagnostics::new();
        let ctx = Context::default();
        assert!(proxmox(&ctx, &mut ctx_diags).is_none());
        assert!(ctx_diags.has_errors());
    }
}
