//! `config_contract`: the Talos configuration contract the machine configurations are
//! rendered for, chosen as talosctl's `--talos-version` chooses it — explicitly, never by an
//! upgrade.
//!
//! * Not configured: the contract of the state (kept), else — a state written before the
//!   attribute existed — the minor release of the state's `talos_version`, else (create) the
//!   minor release of `talos_version`. So a cluster upgraded from v1.12 to v1.13 keeps its
//!   v1.12-contract configuration until `config_contract = "v1.13"` is set.
//! * Refused at plan: a contract newer than the Talos release any node runs (its recorded
//!   `node_versions`, else the planned `talos_version`); `waddle_talos`'s validation
//!   refuses one newer than `talos_version` itself.

use waddle_framework::prelude::*;
use waddle_talos::versions::{self, ConfigContract};

use super::ClusterModel;

/// The attribute.
pub const ATTR: &str = "config_contract";

/// The schema attribute.
pub fn attribute() -> Attribute {
    let values: Vec<&str> = ConfigContract::ALL.iter().map(|c| c.as_str()).collect();
    Attribute::string()
        .optional()
        .computed()
        .validate(Validator::one_of(values.clone()))
        .description(format!(
            "Talos machine-configuration contract the nodes' configurations are rendered for, \
             as `talosctl gen config --talos-version` chooses it: {}. Defaults to the minor \
             release of `talos_version` when the cluster is created, then kept: upgrading \
             `talos_version` from v1.12 to v1.13 keeps the v1.12 contract (which Talos v1.13 \
             runs) until this is set to `\"v1.13\"`, which re-renders every configuration \
             (applied in place). A contract newer than the Talos release any node runs is \
             refused at plan: upgrade first, then change the contract. Removing the attribute \
             keeps the current contract.\n\n\
             The configurations carry every key `talosctl gen config` writes for the same \
             inputs and contract, except these intended differences:\n\n{}\n\
             waddle adds: {}.",
            values
                .iter()
                .map(|v| format!("`\"{v}\"`"))
                .collect::<Vec<_>>()
                .join(", "),
            waddle_talos::config::talosctl_differences_markdown(),
            waddle_talos::config::WADDLE_ADDITIONS.join("; "),
        ))
}

/// Plan-time check of the configured value (unknown values are skipped).
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    if let Some(c) = config.get_attr(ATTR).and_then(Value::as_str) {
        if let Err(e) = ConfigContract::parse(c) {
            diags.error_at(
                AttributePath::attr(ATTR),
                "Invalid configuration contract",
                e.to_string(),
            );
        }
    }
}

/// The contract a model's state or configuration stands for: its `config_contract`, else
/// the minor release of its `talos_version` (v1.12 when unknown).
pub fn of_model(m: &ClusterModel) -> ConfigContract {
    m.config_contract
        .as_deref()
        .and_then(|c| ConfigContract::parse(c).ok())
        .or_else(|| {
            ConfigContract::of_talos_version(
                m.talos_version
                    .as_deref()
                    .unwrap_or(versions::DEFAULT_TALOS_VERSION),
            )
        })
        .unwrap_or(ConfigContract::V1_12)
}

/// Plans `config_contract` (before the machine configurations are rendered from the plan)
/// and refuses a contract newer than the Talos release a node runs.
pub fn plan(
    config: &Value,
    prior: Option<&ClusterModel>,
    plan: &mut Value,
    diags: &mut Diagnostics,
) {
    let path = AttributePath::attr(ATTR);
    let configured = config.get_attr(ATTR).cloned().unwrap_or(Value::Null);
    if !configured.is_known() {
        plan.set_path(&path, Value::unknown());
        return;
    }
    let chosen = match (configured.as_str(), prior) {
        (Some(c), _) => c.to_string(),
        (None, Some(p)) => of_model(p).as_str().to_string(),
        (None, None) => match plan.get_attr("talos_version") {
            Some(v) if !v.is_known() => {
                plan.set_path(&path, Value::unknown());
                return;
            }
            v => {
                let talos = v
                    .and_then(Value::as_str)
                    .unwrap_or(versions::DEFAULT_TALOS_VERSION);
                ConfigContract::of_talos_version(talos)
                    .unwrap_or(ConfigContract::V1_12)
                    .as_str()
                    .to_string()
            }
        },
    };
    plan.set_path(&path, Value::from(chosen.as_str()));
    let Ok(contract) = ConfigContract::parse(&chosen) else {
        return; // the validator reports it
    };
    let Some(prior) = prior else {
        return; // at create every node runs `talos_version`, checked by validation
    };
    // What each node runs: its record, else (a node to be created) the planned version.
    let planned = plan
        .get_attr("talos_version")
        .and_then(Value::as_str)
        .map(str::to_string);
    let records = prior.node_versions.clone().unwrap_or_default();
    let nodes: Vec<String> = plan
        .get_attr("nodes")
        .and_then(Value::as_entries)
        .map(|e| e.keys().cloned().collect())
        .unwrap_or_default();
    let mut behind: Vec<String> = Vec::new();
    for name in nodes {
        let runs = records
            .get(&name)
            .and_then(|r| r.talos_version.clone())
            .or_else(|| prior.talos_version.clone().filter(|_| records.is_empty()))
            .or_else(|| planned.clone());
        if let Some(v) = runs {
            if contract.runs_on(&v) == Some(false) {
                behind.push(format!("{name} runs {v}"));
            }
        }
    }
    if !behind.is_empty() {
        diags.error_at(
            path,
            "Configuration contract newer than the nodes' Talos",
            format!(
                "config_contract {contract} is newer than the Talos release of nodes that would \
                 run it ({}): Talos runs configurations of its own minor release or older. \
                 Upgrade talos_version to {contract}.x first (one apply), then set \
                 config_contract = \"{contract}\".",
                behind.join(", ")
            ),
        );
    }
}

/// State upgrade from schema version 0 (before `config_contract`): the contract a v0 state
/// was rendered for, the minor release of its `talos_version` (v0 rendered v1.12 only).
pub fn upgrade_v0(
    mut raw: serde_json::Value,
    diags: &mut Diagnostics,
) -> Option<serde_json::Value> {
    let Some(obj) = raw.as_object_mut() else {
        diags.error(
            "Unable to Upgrade Resource State",
            "the stored waddle_talos_cluster state (schema version 0) is not an object",
        );
        return None;
    };
    let talos = obj
        .get("talos_version")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(versions::DEFAULT_TALOS_VERSION);
    let contract = ConfigContract::of_talos_version(talos).unwrap_or(ConfigContract::V1_12);
    obj.insert(ATTR.to_string(), serde_json::Value::from(contract.as_str()));
    Some(raw)
}
