//! State types, the ownership mark in a rule's comment, and the mapping between a managed
//! rule and a Proxmox firewall rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use waddle_framework::prelude::*;
use waddle_proxmox::FirewallRule;

use super::super::timeouts::TimeoutsModel;
use super::TYPE_NAME;

/// Every rule waddle manages has a comment starting with this; nothing else is touched.
pub const MARK: &str = "waddle:";

/// One managed rule (`rules["<key>"]`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleModel {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub action: Option<String>,
    pub source: Option<String>,
    pub dest: Option<String>,
    pub proto: Option<String>,
    pub dport: Option<String>,
    pub sport: Option<String>,
    #[serde(rename = "macro")]
    pub macro_name: Option<String>,
    pub iface: Option<String>,
    pub log: Option<String>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
    pub expires: Option<String>,
}

/// `ipset`: an IP set for operator addresses, owned by this resource.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct IpSetModel {
    pub name: String,
    pub cidrs: Vec<String>,
}

/// `previous_options`: the cluster options before create, restored by destroy.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct PreviousOptions {
    pub enabled: Option<bool>,
    pub policy_in: Option<String>,
    pub policy_out: Option<String>,
}

/// The resource state (one field per attribute).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct FirewallState {
    pub id: Option<String>,
    pub node: Option<String>,
    pub enabled: Option<bool>,
    pub policy_in: Option<String>,
    pub policy_out: Option<String>,
    pub rules: Option<BTreeMap<String, RuleModel>>,
    /// Computed: keys of the rules in Proxmox (state) / after the apply (plan).
    pub active_rules: Option<Vec<String>>,
    pub ipset: Option<IpSetModel>,
    pub acknowledge_lockout_risk: Option<bool>,
    pub client_address: Option<String>,
    pub previous_options: Option<PreviousOptions>,
    pub timeouts: Option<TimeoutsModel>,
}

impl FirewallState {
    pub fn rules(&self) -> BTreeMap<String, RuleModel> {
        self.rules.clone().unwrap_or_default()
    }
    /// Rules that are (to be) in Proxmox (every rule when `active_rules` is unset).
    pub fn active_rules(&self) -> BTreeMap<String, RuleModel> {
        self.rules()
            .into_iter()
            .filter(|(k, _)| self.active_rules.as_ref().is_none_or(|a| a.contains(k)))
            .collect()
    }
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
    pub fn policy_in(&self) -> &str {
        self.policy_in.as_deref().unwrap_or("DROP")
    }
    pub fn policy_out(&self) -> &str {
        self.policy_out.as_deref().unwrap_or("ACCEPT")
    }
}

/// A comment's parts: `waddle:<key>[ expires=<RFC 3339>][ <description>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub key: String,
    pub expires: Option<String>,
    pub description: Option<String>,
}

/// The comment a managed rule carries.
pub fn comment(key: &str, r: &RuleModel) -> String {
    let mut c = format!("{MARK}{key}");
    if let Some(e) = &r.expires {
        c.push_str(" expires=");
        c.push_str(e);
    }
    if let Some(d) = r.description.as_deref().filter(|d| !d.is_empty()) {
        c.push(' ');
        c.push_str(d);
    }
    c
}

/// Parse a rule comment; `None` for a rule that is not waddle's.
pub fn parse_mark(comment: Option<&str>) -> Option<Mark> {
    let rest = comment?.trim().strip_prefix(MARK)?;
    let (key, mut rest) = match rest.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim_start()),
        None => (rest, ""),
    };
    if super::validate::validate_key(key).is_err() {
        return None;
    }
    let mut expires = None;
    if let Some(e) = rest.strip_prefix("expires=") {
        let (e, r) = e.split_once(char::is_whitespace).unwrap_or((e, ""));
        expires = Some(e.to_string());
        rest = r.trim_start();
    }
    Some(Mark {
        key: key.to_string(),
        expires,
        description: (!rest.is_empty()).then(|| rest.trim_end().to_string()),
    })
}

/// The Proxmox rule a managed rule is.
pub fn to_api(key: &str, r: &RuleModel) -> FirewallRule {
    FirewallRule {
        pos: None,
        direction: r.kind.clone().unwrap_or_else(|| "in".into()),
        action: r.action.clone().unwrap_or_else(|| "ACCEPT".into()),
        enable: r.enabled.unwrap_or(true),
        source: r.source.clone(),
        dest: r.dest.clone(),
        proto: r.proto.clone(),
        dport: r.dport.clone(),
        sport: r.sport.clone(),
        macro_name: r.macro_name.clone(),
        iface: r.iface.clone(),
        log: r.log.clone(),
        comment: Some(comment(key, r)),
        icmp_type: None,
    }
}

/// Do two rules say the same (position and digest aside; PVE matches macro names without
/// regard to case)?
pub fn same_rule(a: &FirewallRule, b: &FirewallRule) -> bool {
    let strip = |r: &FirewallRule| FirewallRule {
        pos: None,
        macro_name: r.macro_name.as_ref().map(|m| m.to_ascii_lowercase()),
        comment: r.comment.as_ref().map(|c| c.trim().to_string()),
        ..r.clone()
    };
    strip(a) == strip(b)
}

/// A managed rule read from Proxmox (`prior`: the state's version). Values equal to the
/// defaults (`in`, `ACCEPT`, enabled) read as unset unless the prior state spelled them out;
/// spellings PVE normalizes (macro case) keep the prior's.
pub fn from_api(r: &FirewallRule, mark: &Mark, prior: Option<&RuleModel>) -> RuleModel {
    let keep = |api: Option<String>, prior: Option<&String>, default: &str| -> Option<String> {
        match (api, prior) {
            (Some(a), Some(p)) if a.eq_ignore_ascii_case(p) => Some(p.clone()),
            (Some(a), _) if a == default => None,
            (a, _) => a,
        }
    };
    let enabled = match prior.and_then(|p| p.enabled) {
        Some(_) => Some(r.enable),
        None if r.enable => None,
        None => Some(false),
    };
    RuleModel {
        kind: keep(
            Some(r.direction.clone()),
            prior.and_then(|p| p.kind.as_ref()),
            "in",
        ),
        action: keep(
            Some(r.action.clone()),
            prior.and_then(|p| p.action.as_ref()),
            "ACCEPT",
        ),
        source: r.source.clone(),
        dest: r.dest.clone(),
        proto: r.proto.clone(),
        dport: r.dport.clone(),
        sport: r.sport.clone(),
        macro_name: keep(
            r.macro_name.clone(),
            prior.and_then(|p| p.macro_name.as_ref()),
            "",
        ),
        iface: r.iface.clone(),
        log: r.log.clone(),
        enabled,
        description: mark.description.clone(),
        expires: mark.expires.clone(),
    }
}

pub fn from_typed(state: &FirewallState, diags: &mut Diagnostics) -> Option<Value> {
    match super::schema::schema().from_typed(state) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.error("Internal error", format!("encoding {TYPE_NAME} state: {e}"));
            None
        }
    }
}

pub fn to_typed(v: &Value, diags: &mut Diagnostics) -> Option<FirewallState> {
    match v.to_typed::<FirewallState>() {
        Ok(s) => Some(s),
        Err(e) => {
            diags.error("Internal error", format!("decoding {TYPE_NAME} state: {e}"));
            None
        }
    }
}

/// Seconds since the epoch of an RFC 3339 date-time (`2026-02-01T18:00:00Z`,
/// `2026-02-01T19:00:00.5+01:00`).
pub fn parse_rfc3339(s: &str) -> Result<i64, super::validate::FwValueError> {
    let bad = || super::validate::FwValueError::Time(s.into());
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, super::validate::FwValueError> {
        let t = s.get(r).ok_or_else(bad)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > dim[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || sec > 60
    {
        return Err(bad());
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad());
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o[1..3].parse().map_err(|_| bad())?;
            let om: i64 = o[4..6].parse().map_err(|_| bad())?;
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    // days from civil (Howard Hinnant)
    let (yy, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Has the rule's `expires` passed at `now`? (An unparsable value was refused at plan.)
pub fn expired(r: &RuleModel, now: i64) -> bool {
    r.expires
        .as_deref()
        .and_then(|e| parse_rfc3339(e).ok())
        .is_some_and(|t| t <= now)
}
