//! Permission preflight: before a plan changes anything, read the API token's own effective
//! privileges (`GET /access/permissions?path=…`, cached per provider process) and refuse the
//! plan — in one error diagnostic — when a privilege this change needs is missing, naming
//! every missing privilege, its ACL path, why it is needed and the `pveum` commands that
//! grant it. Only what this change needs is required (see [`needs`]): no change needs
//! nothing, a delete needs less than a create. When the permissions cannot be read (the
//! endpoint is forbidden or fails), the plan continues with a warning.
//!
//! It runs at plan time, so `tofu plan` already shows the refusal and `apply` never starts
//! changing things. Every resource is wrapped by [`wrap`] (in `Provider::resources`); the
//! resources themselves know nothing about it.

pub mod needs;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use waddle_framework::prelude::*;

use crate::provider::ProviderConfig;
pub use needs::{Change, Grant, Need, Target};

/// Why the permissions of the token could not be checked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PreflightError {
    #[error("GET /access/permissions?path={path} failed: {message}")]
    Permissions { path: String, message: String },
}

/// Who the client authenticates as (what `pveum acl modify` grants to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `user@realm!tokenid`
    Token { user: String, token: String },
    /// `user@realm` (ticket login)
    User(String),
}

impl Subject {
    fn id(&self) -> String {
        match self {
            Subject::Token { user, token } => format!("{user}!{token}"),
            Subject::User(u) => u.clone(),
        }
    }
}

/// A missing privilege: path -> privilege -> reasons.
pub type Missing = BTreeMap<String, BTreeMap<&'static str, BTreeSet<String>>>;

/// Where privileges are read from (the Proxmox client; a fake in unit tests).
#[async_trait]
pub trait PrivilegeSource: Send + Sync {
    /// Cache key prefix (endpoint and subject).
    fn key(&self) -> String;
    /// Effective privileges on exactly `path`.
    async fn privileges(&self, path: &str) -> Result<BTreeSet<String>, PreflightError>;
    /// The SDN zone of vnet `bridge`, `None` for a plain Linux bridge; `Err` when unknown.
    async fn vnet_zone(&self, bridge: &str) -> Result<Option<String>, PreflightError>;
}

struct ClientSource {
    client: waddle_proxmox::Client,
    subject: String,
}

#[async_trait]
impl PrivilegeSource for ClientSource {
    fn key(&self) -> String {
        format!("{} {}", self.client.base_url(), self.subject)
    }
    async fn privileges(&self, path: &str) -> Result<BTreeSet<String>, PreflightError> {
        self.client
            .permissions(Some(path))
            .await
            .map(|p| p.at(path))
            .map_err(|e| PreflightError::Permissions {
                path: path.to_string(),
                message: e.to_string(),
            })
    }
    async fn vnet_zone(&self, bridge: &str) -> Result<Option<String>, PreflightError> {
        let v =
            self.client
                .get_sdn_vnet(bridge)
                .await
                .map_err(|e| PreflightError::Permissions {
                    path: format!("/cluster/sdn/vnets/{bridge}"),
                    message: e.to_string(),
                })?;
        Ok(v.and_then(|v| v.get("zone").and_then(|z| z.as_str()).map(str::to_string)))
    }
}

type Cache = Mutex<HashMap<String, Result<BTreeSet<String>, PreflightError>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

async fn cached_privileges(
    src: &dyn PrivilegeSource,
    path: &str,
) -> Result<BTreeSet<String>, PreflightError> {
    let key = format!("{} {path}", src.key());
    if let Some(hit) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
        return hit;
    }
    let got = src.privileges(path).await;
    if let Ok(mut c) = cache().lock() {
        c.insert(key, got.clone());
    }
    got
}

async fn resolve(src: &dyn PrivilegeSource, target: &Target) -> Option<String> {
    match target {
        Target::Path(p) => Some(p.clone()),
        // An unreadable vnet (no SDN.Audit) leaves the check to PVE rather than guessing.
        Target::Bridge(b) => match src.vnet_zone(b).await {
            Ok(Some(zone)) => Some(format!("/sdn/zones/{zone}/{b}")),
            Ok(None) => Some(format!("/sdn/zones/localnetwork/{b}")),
            Err(_) => None,
        },
    }
}

/// Check `needs`; the missing privileges (first alternative of each unmet need).
pub async fn missing(src: &dyn PrivilegeSource, needs: &[Need]) -> Result<Missing, PreflightError> {
    let mut out = Missing::new();
    for need in needs {
        let mut first: Option<(String, Vec<&'static str>)> = None;
        let mut met = false;
        for g in &need.any_of {
            let Some(path) = resolve(src, &g.target).await else {
                met = true;
                break;
            };
            let held = cached_privileges(src, &path).await?;
            let lack: Vec<&'static str> = g
                .privs
                .iter()
                .copied()
                .filter(|p| !held.contains(*p))
                .collect();
            if lack.is_empty() {
                met = true;
                break;
            }
            first.get_or_insert((path, lack));
        }
        if let (false, Some((path, lack))) = (met, first) {
            let at = out.entry(path).or_default();
            for p in lack {
                at.entry(p).or_default().insert(need.why.clone());
            }
        }
    }
    Ok(out)
}

/// The refusal: every missing privilege with its path and reasons, and the `pveum` commands.
pub fn refusal(subject: &Subject, type_name: &str, missing: &Missing) -> (String, String) {
    let (kind, flag) = match subject {
        Subject::Token { .. } => ("API token", "--tokens"),
        Subject::User(_) => ("user", "--users"),
    };
    let id = subject.id();
    let mut d = format!(
        "The Proxmox VE {kind} `{id}` lacks privileges that this plan of {type_name} needs. \
         Nothing has been changed. Missing:\n\n"
    );
    let mut all = BTreeSet::new();
    for (path, privs) in missing {
        for (p, why) in privs {
            all.insert(*p);
            let why: Vec<&str> = why.iter().map(String::as_str).collect();
            d.push_str(&format!("  - {p} on {path} ({})\n", why.join("; ")));
        }
    }
    let privs: Vec<&str> = all.into_iter().collect();
    d.push_str(&format!(
        "\nGrant them, for example with a role holding them (`pveum role modify WaddleProvider \
         --append 1 --privs ...` if it exists):\n\n  pveum role add WaddleProvider --privs \"{}\"\n",
        privs.join(",")
    ));
    for path in missing.keys() {
        d.push_str(&format!(
            "  pveum acl modify {path} {flag} '{id}' --roles WaddleProvider\n"
        ));
    }
    if let Subject::Token { user, .. } = subject {
        d.push_str(&format!(
            "\nA token with privilege separation (the default) only holds what both it and its \
             user `{user}` hold: grant the same to the user (`--users '{user}'`) if it lacks them."
        ));
    }
    ("Missing Proxmox VE privileges".to_string(), d)
}

/// The kind of change a plan makes, `None` when it changes nothing.
pub fn change_of(req: &PlanRequest, plan: &Plan) -> Option<Change> {
    if req.is_destroy() {
        Some(Change::Delete)
    } else if req.is_create() {
        Some(Change::Create)
    } else if plan.state.equals(&req.prior_state) {
        None
    } else {
        Some(Change::Update)
    }
}

/// Run the preflight for one planned change of `type_name`.
pub async fn check(
    ctx: &Context,
    type_name: &str,
    req: &PlanRequest,
    plan: &Plan,
    diags: &mut Diagnostics,
) {
    let Some(change) = change_of(req, plan) else {
        tracing::debug!(type_name, "preflight: no change");
        return;
    };
    // Offline use, an unfinished provider configuration, or no token: nothing to check
    // (the resource reports a missing configuration itself).
    let Some(cfg) = ctx.provider_data::<ProviderConfig>() else {
        tracing::debug!(type_name, "preflight: provider not configured");
        return;
    };
    let Some(token) = cfg.api_token.as_ref() else {
        tracing::debug!(type_name, "preflight: no API token");
        return;
    };
    let Ok(client) = crate::clients::proxmox_for(cfg) else {
        tracing::debug!(type_name, "preflight: no Proxmox client");
        return;
    };
    let needs = needs::needs(type_name, change, req, &plan.state, cfg.default_node());
    tracing::debug!(type_name, ?change, needs = needs.len(), "preflight");
    if needs.is_empty() {
        return;
    }
    let subject = Subject::Token {
        user: token.user.clone(),
        token: token.token_id.clone(),
    };
    let src = ClientSource {
        client,
        subject: subject.id(),
    };
    report(&src, &subject, type_name, &needs, diags).await;
}

/// Check `needs` against `src` and add the refusal (error) or the warning to `diags`.
pub async fn report(
    src: &dyn PrivilegeSource,
    subject: &Subject,
    type_name: &str,
    needs: &[Need],
    diags: &mut Diagnostics,
) {
    match missing(src, needs).await {
        Ok(m) if m.is_empty() => {}
        Ok(m) => {
            let (summary, detail) = refusal(subject, type_name, &m);
            diags.error(summary, detail);
        }
        Err(e) => diags.warning(
            "Proxmox VE permissions not checked",
            format!(
                "The privileges of `{}` could not be read before planning changes ({e}); the \
                 plan continues without the check (grant `Sys.Audit` on `/access` or let the \
                 token read its own permissions to enable it). A missing privilege will only \
                 show when the apply reaches the step that needs it.",
                subject.id()
            ),
        ),
    }
}

/// Wrap a resource so its plans run the preflight after the resource's own plan logic.
pub fn wrap(inner: Arc<dyn Resource>) -> Arc<dyn Resource> {
    Arc::new(Preflighted(inner))
}

struct Preflighted(Arc<dyn Resource>);

#[async_trait]
impl Resource for Preflighted {
    fn type_name(&self) -> &str {
        self.0.type_name()
    }
    fn schema(&self) -> Schema {
        self.0.schema()
    }
    async fn validate_config(&self, ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        self.0.validate_config(ctx, config, diags).await
    }
    async fn modify_plan(
        &self,
        ctx: &Context,
        req: &PlanRequest,
        plan: &mut Plan,
        diags: &mut Diagnostics,
    ) {
        self.0.modify_plan(ctx, req, plan, diags).await;
        if !diags.has_errors() {
            check(ctx, self.0.type_name(), req, plan, diags).await;
        }
    }
    async fn create(
        &self,
        ctx: &Context,
        req: CreateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        self.0.create(ctx, req, diags).await
    }
    async fn read(&self, ctx: &Context, state: Value, diags: &mut Diagnostics) -> Option<Value> {
        self.0.read(ctx, state, diags).await
    }
    async fn update(
        &self,
        ctx: &Context,
        req: UpdateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        self.0.update(ctx, req, diags).await
    }
    async fn delete(&self, ctx: &Context, prior_state: Value, diags: &mut Diagnostics) {
        self.0.delete(ctx, prior_state, diags).await
    }
    async fn import_state(
        &self,
        ctx: &Context,
        req: ImportRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        self.0.import_state(ctx, req, diags).await
    }
    fn upgrade_state(
        &self,
        from_version: i64,
        raw: serde_json::Value,
        diags: &mut Diagnostics,
    ) -> Option<serde_json::Value> {
        self.0.upgrade_state(from_version, raw, diags)
    }
    async fn move_state(
        &self,
        ctx: &Context,
        req: MoveStateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        self.0.move_state(ctx, req, diags).await
    }
    fn import_identity(&self) -> Option<ImportIdentity> {
        self.0.import_identity()
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        self.0.identity_schema()
    }
    fn identity(&self, state: &Value) -> Option<Value> {
        self.0.identity(state)
    }
    fn upgrade_identity(
        &self,
        from_version: i64,
        raw: serde_json::Value,
        diags: &mut Diagnostics,
    ) -> Option<serde_json::Value> {
        self.0.upgrade_identity(from_version, raw, diags)
    }
}

#[cfg(test)]
mod tests;
