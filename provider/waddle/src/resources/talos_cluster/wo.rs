//! `machine_secrets_wo` (write-only, Terraform/OpenTofu >= 1.11) with
//! `machine_secrets_wo_version`, and the masked configurations every plan shows.
//!
//! The bundle is read from the configuration at every plan and apply (a write-only value is
//! there, and null in every state and plan value). With it, `machine_secrets` and
//! `machine_configurations` are null in state; reading and destroying the cluster use
//! `client_configuration` (the admin client certificate issued from the bundle), and drift is
//! found on the masked configurations (`machine_configurations_masked`). A bundle other than
//! the cluster's (its OS CA certificate is not the one `client_configuration` holds) is
//! refused unless the version changes, which replaces the cluster.

use std::collections::BTreeMap;

use waddle_framework::prelude::*;
use waddle_talos::api::Credentials;
use waddle_talos::mask::mask_config;
use waddle_talos::SecretsBundle;

use super::ClusterModel;

/// The write-only attribute.
pub const ATTR: &str = "machine_secrets_wo";
/// Its version.
pub const VERSION_ATTR: &str = "machine_secrets_wo_version";
/// The masked configurations.
pub const MASKED_ATTR: &str = "machine_configurations_masked";

/// Whether the configuration sets `machine_secrets_wo` (known or not).
pub fn configured(config: &Value) -> bool {
    config.get_attr(ATTR).is_some_and(|v| !v.is_null())
}

/// A `machine_secrets_wo` that is not a secrets bundle.
#[derive(Debug, thiserror::Error)]
#[error("{ATTR}: {0}")]
pub struct BundleError(#[source] pub waddle_talos::secrets::SecretsError);

/// The bundle of a configuration's `machine_secrets_wo` (`None`: not set or not known).
pub fn bundle(config: &Value) -> Option<Result<SecretsBundle, BundleError>> {
    let text = config.get_attr(ATTR).and_then(Value::as_str)?;
    Some(SecretsBundle::from_yaml(text).map_err(BundleError))
}

/// Plan-time checks: not with `machine_secrets`, only with a version, a bundle that parses.
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    if !configured(config) {
        if config.get_attr(VERSION_ATTR).is_some_and(|v| !v.is_null()) {
            diags.error_at(
                AttributePath::attr(VERSION_ATTR),
                "Invalid attribute combination",
                format!("{VERSION_ATTR} is only used with {ATTR}"),
            );
        }
        return;
    }
    if config
        .get_attr("machine_secrets")
        .is_some_and(|v| !v.is_null())
    {
        diags.error_at(
            AttributePath::attr(ATTR),
            "Conflicting secrets",
            format!("set only one of machine_secrets and {ATTR}"),
        );
    }
    if config.get_attr(VERSION_ATTR).is_some_and(Value::is_null) {
        diags.error_at(
            AttributePath::attr(VERSION_ATTR),
            "Missing required argument",
            format!(
                "{ATTR} needs {VERSION_ATTR} (e.g. 1): a change of the version re-keys the \
                 cluster, that is, re-creates it with the new bundle"
            ),
        );
    }
    if let Some(Err(e)) = bundle(config) {
        diags.error_at(
            AttributePath::attr(ATTR),
            "Invalid secrets bundle",
            e.to_string(),
        );
    }
}

/// The OS CA certificate a state's cluster was made with (from `client_configuration`).
fn cluster_ca(prior: &ClusterModel) -> Option<&str> {
    prior
        .client_configuration
        .as_ref()
        .map(|c| c.ca_certificate.as_str())
        .filter(|c| !c.is_empty())
}

/// The secrets of a plan: `machine_secrets_wo` from the configuration, else the plan's
/// `machine_secrets` (`None`: unknown or to be generated).
pub fn plan_secrets(config: &Value, plan: &Value) -> Option<String> {
    if configured(config) {
        return config
            .get_attr(ATTR)
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    plan.get_attr("machine_secrets")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// What a plan does with the secrets: in write-only mode `machine_secrets` and
/// `machine_configurations` are null; a switch between `machine_secrets` and
/// `machine_secrets_wo` with the same bundle is an update, with another bundle a
/// replacement (from `machine_secrets`) or refused (without a new version); a cluster whose
/// bundle is only in the configuration cannot lose it. Runs after the plan's replacements
/// are final but for this.
pub fn plan(
    config: &Value,
    prior: Option<&ClusterModel>,
    plan: &mut Plan,
    diags: &mut Diagnostics,
) {
    let wo = configured(config);
    if wo {
        plan.state
            .set_path(&AttributePath::attr("machine_secrets"), Value::Null);
        plan.state
            .set_path(&AttributePath::attr("machine_configurations"), Value::Null);
    }
    let Some(prior) = prior else { return };
    let Some(ca) = cluster_ca(prior) else { return };
    let secrets_path = AttributePath::attr("machine_secrets");
    let given = match (wo, bundle(config)) {
        (true, Some(Ok(b))) => Some(b),
        (true, _) => None, // unknown, or reported by validation
        (false, _) => {
            let configured_secrets = config
                .get_attr("machine_secrets")
                .is_some_and(|v| !v.is_null());
            if prior.machine_secrets.is_none() && !configured_secrets {
                diags.error_at(
                    AttributePath::attr(ATTR),
                    "The cluster's secrets are missing",
                    format!(
                        "this cluster's secrets bundle is not in the state (it was given by \
                         {ATTR}): set {ATTR} to it again, or machine_secrets to the same bundle"
                    ),
                );
                return;
            }
            match (
                prior.machine_secrets.is_none(),
                config.get_attr("machine_secrets"),
            ) {
                (true, Some(v)) => v.as_str().and_then(|s| SecretsBundle::from_yaml(s).ok()),
                _ => None,
            }
        }
    };
    let Some(given) = given else { return };
    if given.os_ca.crt.trim() == ca.trim() {
        // The cluster's own bundle: moving it in or out of the state is an update (a new
        // version with the write-only bundle stays an asked-for re-creation).
        let version_path = AttributePath::attr(VERSION_ATTR);
        plan.requires_replace
            .retain(|p| p != &secrets_path && (wo || p != &version_path));
        return;
    }
    let version_changed = prior.machine_secrets_wo_version
        != plan.state.get_attr(VERSION_ATTR).and_then(Value::as_i64);
    match (wo, prior.machine_secrets.is_some()) {
        // From machine_secrets to another bundle: a re-key, as a changed machine_secrets.
        (true, true) => {
            if !plan.requires_replace.contains(&secrets_path) {
                plan.requires_replace.push(secrets_path);
            }
        }
        (true, false) if version_changed => {}
        (true, false) => diags.error_at(
            AttributePath::attr(ATTR),
            "Secrets bundle changed",
            format!(
                "{ATTR} is not this cluster's bundle (its OS CA differs). To re-key, that is, \
                 re-create the cluster with the new bundle, change {VERSION_ATTR} too; \
                 otherwise give the cluster's own secrets.yaml"
            ),
        ),
        // From machine_secrets_wo to another bundle in machine_secrets: a re-key.
        (false, _) => {
            if !plan.requires_replace.contains(&secrets_path) {
                plan.requires_replace.push(secrets_path);
            }
        }
    }
}

/// The masked configuration of every node in `configs`.
pub fn masked(configs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    configs
        .iter()
        .filter_map(|(k, c)| mask_config(c).ok().map(|m| (k.clone(), m)))
        .collect()
}

/// What a create or update writes last: the masked configurations (of the configurations
/// applied; a node without one keeps its prior masked configuration), and in write-only
/// mode no bundle and no full configuration.
pub fn finalize(m: &mut ClusterModel, write_only: bool, prior: Option<&ClusterModel>) {
    let configs = m.machine_configurations.clone().unwrap_or_default();
    let prior_masked = prior
        .and_then(|p| p.machine_configurations_masked.clone())
        .unwrap_or_default();
    let mut out = masked(&configs);
    for k in m.nodes().keys() {
        if !out.contains_key(k) {
            if let Some(p) = prior_masked.get(k) {
                out.insert(k.clone(), p.clone());
            }
        }
    }
    m.machine_configurations_masked = Some(out);
    if write_only {
        m.machine_secrets = None;
        m.machine_configurations = None;
    }
}

/// Credentials from a state alone: its `client_configuration`, else issued from its bundle.
pub fn state_credentials(m: &ClusterModel) -> Option<Credentials> {
    if let Some(c) = m
        .client_configuration
        .as_ref()
        .filter(|c| !c.client_key.is_empty())
    {
        return Some(Credentials::new(
            &c.ca_certificate,
            &c.client_certificate,
            &c.client_key,
        ));
    }
    None
}
