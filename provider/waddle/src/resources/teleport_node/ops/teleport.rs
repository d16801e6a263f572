//! Teleport on the VM, through its guest agent: installation and upgrades of the pinned
//! package, the configuration, the root-only secrets, readiness (`/readyz`, `/webapi/ping`),
//! the connector and roles (`tctl create -f`), the client-secret check against GitHub, and
//! the live state for drift.
//!
//! Secrets never appear in an argv, a log line or an error: they are written into files
//! created root-only first (`install -m 0600 /dev/null <path>`, then the agent's file write,
//! which keeps the mode) and read by `tctl` / `curl` from there.

use sha2::{Digest, Sha256};
use waddle_proxmox::Guest;
use waddle_teleport::cloudinit::{
    apt_source, install_script, APT_LIST_PATH, CONNECTOR_PATH, HASH_MARKER_PATH, ROLES_LIST_PATH,
    ROLES_PATH,
};
use waddle_teleport::spec::{CONFIG_PATH, DIAG_ADDR, KUBECONFIG_PATH, WEB_PORT};
use waddle_teleport::{ConnectorDoc, HashInputs, RoleDoc, Secret, Version};

use super::super::model::TeleportPayload;
use crate::resources::timeouts::Deadline;
use crate::resources::vm::guest::{self, run, GuestError, Probe, Stop};
use crate::resources::vm::VmError;

/// The form body of the client-secret check (root-only, removed after).
const CHECK_PATH: &str = "/etc/teleport/waddle-github-check";
/// GitHub's OAuth token endpoint: with a made-up code it answers `bad_verification_code` for
/// a valid client id and secret and `incorrect_client_credentials` otherwise.
const GITHUB_TOKEN_URL: &str = "https://github.com/login/oauth/access_token";

/// Why Teleport on the VM did not take its configuration.
#[derive(Debug, thiserror::Error)]
pub enum TeleportError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Guest(#[from] GuestError),
    #[error("Teleport rejected the new teleport.yaml (the running Teleport keeps the previous one):\n{0}")]
    ConfigRejected(String),
    #[error("tctl create refused the {what}: {message}")]
    Tctl { what: String, message: String },
    #[error(
        "GitHub refused the OAuth app credentials (client id {client_id:?}): {message}. The client \
         secret is wrong or was revoked: create a new secret for that OAuth app and set \
         github_client_secret (or bump github_client_secret_wo_version)"
    )]
    WrongClientSecret { client_id: String, message: String },
    #[error("{0}")]
    Ping(#[from] waddle_teleport::PingError),
    #[error("cancelled while waiting for the VM")]
    Cancelled,
    #[error("deadline {deadline} passed: {what} (last: {last})")]
    NotReady {
        deadline: String,
        what: String,
        last: String,
    },
    #[error("cloud-init failed on the VM: {0}")]
    CloudInit(String),
    #[error("reading the live {what}: {source}")]
    Live {
        what: String,
        #[source]
        source: waddle_teleport::RenderError,
    },
}

fn step(what: impl Into<String>) -> impl FnOnce(waddle_proxmox::Error) -> TeleportError {
    let f = VmError::api(what);
    move |e| TeleportError::Vm(f(e))
}

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A wait that stopped: cancelled, or `what` not reached by the deadline.
fn stopped(what: &str, deadline: &Deadline) -> impl FnOnce(Stop<TeleportError>) -> TeleportError {
    let (what, deadline) = (what.to_string(), deadline.to_string());
    move |stop| match stop {
        Stop::Failed(e) => e,
        Stop::Cancelled => TeleportError::Cancelled,
        Stop::Deadline { last } => TeleportError::NotReady {
            deadline,
            what,
            last,
        },
    }
}

/// Write a file that only root can read.
async fn write_root_only(
    guest: &Guest<'_>,
    path: &str,
    content: &Secret,
) -> Result<(), TeleportError> {
    run(
        guest,
        "creating a root-only file",
        &[
            "install",
            "-m",
            "0600",
            "-o",
            "root",
            "-g",
            "root",
            "/dev/null",
            path,
        ],
    )
    .await?;
    guest
        .write_file(path, content.expose())
        .await
        .map_err(step(format!("writing {path}")))
}

/// The installed Teleport package version (`None`: not installed).
pub async fn installed_version(guest: &Guest<'_>) -> Result<Option<String>, TeleportError> {
    let r = guest
        .exec(&["dpkg-query", "-W", "-f=${Version}", "teleport"])
        .await
        .map_err(step("reading the Teleport package version"))?;
    Ok(r.success()
        .then(|| r.out_data.trim().to_string())
        .filter(|v| !v.is_empty()))
}

/// After the first boot: wait until cloud-init installed the pinned version.
pub async fn wait_installed(
    guest: &Guest<'_>,
    version: &str,
    deadline: &Deadline,
) -> Result<(), TeleportError> {
    let probe = move || async move {
        Ok(match installed_version(guest).await {
            Ok(Some(v)) if v == version => Probe::Done(()),
            Ok(found) => {
                let ci = guest::cloud_init_status(guest).await.unwrap_or_default();
                if ci.contains("error") {
                    let detail = guest
                        .read_file("/var/log/cloud-init-output.log")
                        .await
                        .ok()
                        .flatten()
                        .map(|l| {
                            let tail: Vec<&str> = l.lines().rev().take(15).collect();
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        })
                        .unwrap_or_default();
                    return Err(TeleportError::CloudInit(format!("{}\n{detail}", ci.trim())));
                }
                Probe::Pending(format!(
                    "teleport package {}",
                    found.unwrap_or_else(|| "not installed yet".into())
                ))
            }
            Err(TeleportError::Vm(VmError::Api { source, .. }))
                if waddle_proxmox::is_final_agent_error(&source) =>
            {
                return Err(TeleportError::Vm(VmError::Api {
                    what: "guest agent".into(),
                    source,
                }))
            }
            Err(e) => Probe::Pending(e.to_string()),
        })
    };
    let what = format!("Teleport {version} was not installed");
    guest::poll_until(guest, deadline, probe)
        .await
        .map_err(stopped(&what, deadline))
}

/// Run `argv` until it succeeds, up to the deadline.
async fn wait_for(
    guest: &Guest<'_>,
    what: &str,
    argv: &[&str],
    deadline: &Deadline,
) -> Result<String, TeleportError> {
    let probe = move || async move {
        Ok(match guest.exec(argv).await {
            Ok(r) if r.success() => Probe::Done(r.out_data),
            Ok(r) => Probe::Pending(format!("exit {:?}: {}", r.exitcode, r.err_data.trim())),
            Err(e) if waddle_proxmox::is_final_agent_error(&e) => return Err(step(what)(e)),
            Err(e) => Probe::Pending(e.to_string()),
        })
    };
    guest::poll_until(guest, deadline, probe)
        .await
        .map_err(stopped(what, deadline))
}

/// Bring the VM to the payload: package version, teleport.yaml, kubeconfig, (re)start,
/// readiness, roles, the credential check, the connector and the ping.
pub async fn converge(
    guest: &Guest<'_>,
    p: &TeleportPayload,
    deadline: &Deadline,
) -> Result<(), TeleportError> {
    let r = &p.rendered;
    let mut restart = false;
    // 1. the pinned package (in place within a major or to the next; checked at plan)
    if installed_version(guest).await?.as_deref() != Some(r.version.as_str()) {
        if let Some(v) = Version::parse(&r.version) {
            guest
                .write_file(APT_LIST_PATH, &apt_source(&v))
                .await
                .map_err(step(format!("writing {APT_LIST_PATH}")))?;
        }
        run(
            guest,
            &format!("installing Teleport {}", r.version),
            &["sh", "-c", &install_script(&r.version)],
        )
        .await?;
        restart = true;
    }
    // 2. teleport.yaml, tested before it replaces the live one
    let live = guest
        .read_file(CONFIG_PATH)
        .await
        .map_err(step("reading teleport.yaml"))?;
    if live.as_deref() != Some(r.teleport_yaml.as_str()) {
        let new = format!("{CONFIG_PATH}.new");
        write_root_only(guest, &new, &Secret::new(r.teleport_yaml.clone())).await?;
        let test = ["teleport", "configure", "--test", &new];
        let what = "testing the new teleport.yaml";
        if let Some(test) = guest::check_staged(guest, what, &test, &[&new]).await? {
            return Err(TeleportError::ConfigRejected(format!(
                "{}{}",
                test.err_data.trim(),
                test.out_data.trim()
            )));
        }
        run(
            guest,
            "installing teleport.yaml",
            &["mv", "-f", &new, CONFIG_PATH],
        )
        .await?;
        restart = true;
    }
    // 3. the kubeconfig, rotated in place
    let mut reload = false;
    if let Some(k) = &p.kubeconfig {
        let live = guest
            .exec(&["sha256sum", KUBECONFIG_PATH])
            .await
            .map_err(step("hashing the kubeconfig"))?;
        let live_hash = live
            .out_data
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if !live.success() || live_hash != sha256(k.expose()) {
            let new = format!("{KUBECONFIG_PATH}.new");
            write_root_only(guest, &new, k).await?;
            run(
                guest,
                "installing the kubeconfig",
                &["mv", "-f", &new, KUBECONFIG_PATH],
            )
            .await?;
            reload = true;
        }
    }
    // 4. (re)start
    let active = guest
        .exec(&["systemctl", "is-active", "teleport"])
        .await
        .map_err(step("reading Teleport's state"))?
        .success();
    if restart || !active {
        run(
            guest,
            "starting Teleport",
            &["systemctl", "restart", "teleport"],
        )
        .await?;
    } else if reload {
        run(
            guest,
            "reloading Teleport",
            &["systemctl", "reload", "teleport"],
        )
        .await?;
    }
    // 5. readiness
    let readyz = format!("http://{DIAG_ADDR}/readyz");
    wait_for(
        guest,
        "Teleport's /readyz to answer",
        &["curl", "-fsS", &readyz],
        deadline,
    )
    .await?;
    // 6. roles (created before the connector that maps to them), removed ones deleted
    if !r.roles_yaml.is_empty() {
        guest
            .write_file(ROLES_PATH, &r.roles_yaml)
            .await
            .map_err(step(format!("writing {ROLES_PATH}")))?;
        tctl_create(guest, "roles", ROLES_PATH, deadline).await?;
    }
    let old = guest
        .read_file(ROLES_LIST_PATH)
        .await
        .map_err(step("reading the managed roles"))?
        .unwrap_or_default();
    for gone in old
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty() && !r.role_names.iter().any(|x| x == n))
    {
        run(
            guest,
            &format!("deleting role {gone}"),
            &["tctl", "rm", &format!("role/{gone}")],
        )
        .await?;
    }
    let list: String = r.role_names.iter().map(|n| format!("{n}\n")).collect();
    guest
        .write_file(ROLES_LIST_PATH, &list)
        .await
        .map_err(step(format!("writing {ROLES_LIST_PATH}")))?;
    // 7. the client secret against GitHub, before Teleport gets it
    check_client_secret(guest, p).await?;
    // 8. the connector (root-only while it exists)
    write_root_only(guest, CONNECTOR_PATH, &p.connector).await?;
    let created = tctl_create(guest, "GitHub connector", CONNECTOR_PATH, deadline).await;
    let _ = guest.exec(&["rm", "-f", CONNECTOR_PATH]).await;
    created?;
    // 9. the proxy answers with GitHub auth and our connector
    let ping = ping(guest, p).await?;
    waddle_teleport::check_ping(&ping, &r.connector_name)?;
    guest
        .write_file(HASH_MARKER_PATH, &format!("{}\n", r.config_hash))
        .await
        .map_err(step(format!("writing {HASH_MARKER_PATH}")))
}

/// `tctl create -f <path>`, retried while the auth service is still starting.
async fn tctl_create(
    guest: &Guest<'_>,
    what: &str,
    path: &str,
    deadline: &Deadline,
) -> Result<(), TeleportError> {
    let probe = move || async move {
        let r = guest
            .exec(&["tctl", "create", "-f", path])
            .await
            .map_err(step(format!("tctl create ({what})")))?;
        if r.success() {
            return Ok(Probe::Done(()));
        }
        let message = format!("{}{}", r.err_data.trim(), r.out_data.trim());
        // Only a not-yet-reachable auth service is worth waiting for.
        if message.contains("connection refused") || message.contains("not ready") {
            return Ok(Probe::Pending(message));
        }
        Err(TeleportError::Tctl {
            what: what.into(),
            message,
        })
    };
    let refused = |message| TeleportError::Tctl {
        what: what.into(),
        message,
    };
    match guest::poll_until(guest, deadline, probe).await {
        Ok(()) => Ok(()),
        Err(Stop::Deadline { last }) => Err(refused(last)),
        Err(stop) => Err(stopped(what, deadline)(stop)),
    }
}

async fn ping(guest: &Guest<'_>, p: &TeleportPayload) -> Result<String, TeleportError> {
    let url = format!("https://127.0.0.1:{WEB_PORT}/webapi/ping");
    let mut argv = vec!["curl", "-fsSk"];
    if p.rendered.teleport_yaml.contains("proxy_protocol: on") {
        // Teleport then requires the header on every connection, ours included.
        argv.push("--haproxy-protocol");
    }
    argv.push(&url);
    Ok(run(guest, "GET /webapi/ping", &argv).await?)
}

/// Ask GitHub's token endpoint with a made-up code: a valid client id and secret get
/// `bad_verification_code`, anything else `incorrect_client_credentials`. The VM asks (it
/// needs GitHub anyway for logins); an unreachable GitHub is logged, not an error.
async fn check_client_secret(guest: &Guest<'_>, p: &TeleportPayload) -> Result<(), TeleportError> {
    let body = Secret::new(format!(
        "client_id={}&client_secret={}&code=waddle-credential-check",
        form_escape(&p.client_id),
        form_escape(p.client_secret.expose())
    ));
    write_root_only(guest, CHECK_PATH, &body).await?;
    let data = format!("@{CHECK_PATH}");
    let r = guest
        .exec(&[
            "curl",
            "-sS",
            "-X",
            "POST",
            "-H",
            "Accept: application/json",
            "--data-binary",
            &data,
            GITHUB_TOKEN_URL,
        ])
        .await;
    let _ = guest.exec(&["rm", "-f", CHECK_PATH]).await;
    let r = r.map_err(step("checking the client secret with GitHub"))?;
    if !r.success() {
        tracing::warn!(vmid = guest.vmid(), "GitHub's token endpoint is not reachable from the VM; the client secret is not checked");
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        error: Option<String>,
        error_description: Option<String>,
    }
    match serde_json::from_str::<Answer>(&r.out_data) {
        Ok(Answer {
            error: Some(e),
            error_description,
        }) if e == "incorrect_client_credentials" => Err(TeleportError::WrongClientSecret {
            client_id: p.client_id.clone(),
            message: error_description.unwrap_or(e),
        }),
        _ => Ok(()),
    }
}

fn form_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What is live: teleport.yaml and the drift hash over it, the connector and the roles.
pub struct Live {
    pub teleport_yaml: String,
    pub hash: String,
    pub version: Option<String>,
    /// The teleport service is active.
    pub active: bool,
}

/// Read the live configuration (`None`: no teleport.yaml).
pub async fn live(
    guest: &Guest<'_>,
    connector: &str,
    roles: &[String],
) -> Result<Option<Live>, TeleportError> {
    let Some(yaml) = guest
        .read_file(CONFIG_PATH)
        .await
        .map_err(step("reading teleport.yaml"))?
    else {
        return Ok(None);
    };
    let active = guest
        .exec(&["systemctl", "is-active", "teleport"])
        .await
        .map_err(step("reading Teleport's state"))?
        .success();
    if !active {
        return Ok(Some(Live {
            teleport_yaml: yaml,
            hash: String::new(),
            version: installed_version(guest).await?,
            active,
        }));
    }
    let get = |what: String| async move {
        let r = guest
            .exec(&["tctl", "get", &what, "--format=json"])
            .await
            .map_err(step(format!("tctl get {what}")))?;
        Ok::<_, TeleportError>(r.success().then_some(r.out_data))
    };
    let live = |what: &str, source| TeleportError::Live {
        what: what.into(),
        source,
    };
    let connector = match get(format!("github/{connector}")).await? {
        Some(json) => {
            let doc: ConnectorDoc = waddle_teleport::parse_live("connector", &json)
                .map_err(|e| live("connector", e))?;
            Some(waddle_teleport::connector_canonical(&doc).map_err(|e| live("connector", e))?)
        }
        None => None,
    };
    let mut docs = std::collections::BTreeMap::new();
    for name in roles {
        let doc = match get(format!("role/{name}")).await? {
            Some(json) => {
                let doc: RoleDoc =
                    waddle_teleport::parse_live("role", &json).map_err(|e| live("role", e))?;
                Some(waddle_teleport::role_canonical(&doc).map_err(|e| live("role", e))?)
            }
            None => None,
        };
        docs.insert(name.clone(), doc);
    }
    let hash = waddle_teleport::config_hash(&HashInputs {
        teleport_yaml: yaml.clone(),
        connector,
        roles: docs,
    });
    Ok(Some(Live {
        teleport_yaml: yaml,
        hash,
        version: installed_version(guest).await?,
        active,
    }))
}
