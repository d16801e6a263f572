//! Proxmox task identifiers (UPIDs).
//!
//! Format (as produced by `PVE::Tools::upid_encode`):
//! `UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type}:{id}:{user}:`
//! where `user` is `user@realm` or, for API tokens, `user@realm!tokenid`, and `id` may be
//! empty (for example `UPID:pve:000A1B2C:0123ABCD:65F0A1B2:qmcreate:100:root@pam:`).

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A parsed UPID. `Display` gives back the original string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    /// Node that runs the task (task status is read from this node).
    pub node: String,
    /// Worker process id.
    pub pid: u32,
    /// Process start time (clock ticks since boot).
    pub pstart: u64,
    /// Task start time (Unix seconds).
    pub starttime: u64,
    /// Task type, e.g. `qmcreate`, `qmstart`, `download`, `imgcopy`, `srvreload`.
    pub worker_type: String,
    /// Task object id (often the VMID); may be empty.
    pub id: String,
    /// `user@realm` or `user@realm!tokenid`.
    pub user: String,
    raw: String,
}

impl Upid {
    /// The UPID string exactly as PVE returned it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

fn hex_field(value: &str, name: &str, raw: &str) -> Result<u64, Error> {
    if value.is_empty() || value.len() > 16 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!(
            "invalid UPID {raw:?}: field {name} is not hexadecimal"
        )));
    }
    u64::from_str_radix(value, 16)
        .map_err(|_| Error::InvalidArgument(format!("invalid UPID {raw:?}: field {name}")))
}

impl FromStr for Upid {
    type Err = Error;

    fn from_str(raw: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid UPID {raw:?}: {why}"));
        let body = raw
            .strip_prefix("UPID:")
            .ok_or_else(|| bad("missing UPID: prefix"))?;
        let body = body
            .strip_suffix(':')
            .ok_or_else(|| bad("missing trailing ':'"))?;
        // node, pid, pstart, starttime, type are ':'-free; user is ':'-free; the id in between
        // may in principle contain ':' so it takes whatever is left.
        let mut left = body.splitn(6, ':');
        let node = left.next().unwrap_or_default();
        let pid = left.next().ok_or_else(|| bad("missing pid"))?;
        let pstart = left.next().ok_or_else(|| bad("missing pstart"))?;
        let starttime = left.next().ok_or_else(|| bad("missing starttime"))?;
        let worker_type = left.next().ok_or_else(|| bad("missing type"))?;
        let rest = left.next().ok_or_else(|| bad("missing id and user"))?;
        let (id, user) = rest.rsplit_once(':').ok_or_else(|| bad("missing user"))?;
        if node.is_empty() {
            return Err(bad("empty node"));
        }
        if worker_type.is_empty() {
            return Err(bad("empty type"));
        }
        if !user.contains('@') {
            return Err(bad("user must be user@realm"));
        }
        let pid = hex_field(pid, "pid", raw)?;
        let pid = u32::try_from(pid).map_err(|_| bad("pid out of range"))?;
        Ok(Upid {
            node: node.to_string(),
            pid,
            pstart: hex_field(pstart, "pstart", raw)?,
            starttime: hex_field(starttime, "starttime", raw)?,
            worker_type: worker_type.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            raw: raw.to_string(),
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_create_upid() {
        let u: Upid = "UPID:pve1:000A1B2C:0123ABCD:65F0A1B2:qmcreate:100:root@pam:"
            .parse()
            .unwrap();
        assert_eq!(u.node, "pve1");
        assert_eq!(u.pid, 0x000A1B2C);
        assert_eq!(u.pstart, 0x0123ABCD);
        assert_eq!(u.starttime, 0x65F0A1B2);
        assert_eq!(u.worker_type, "qmcreate");
        assert_eq!(u.id, "100");
        assert_eq!(u.user, "root@pam");
        assert_eq!(
            u.to_string(),
            "UPID:pve1:000A1B2C:0123ABCD:65F0A1B2:qmcreate:100:root@pam:"
        );
    }

    #[test]
    fn parses_token_user_and_empty_id() {
        let u: Upid = "UPID:node-2:00001234:00ABCDEF:6600AAAA:srvreload:networking:waddle@pve!ci:"
            .parse()
            .unwrap();
        assert_eq!(u.user, "waddle@pve!ci");
        assert_eq!(u.id, "networking");
        let u: Upid = "UPID:pve:00001234:00ABCDEF:6600AAAA:reloadnetworkall::root@pam:"
            .parse()
            .unwrap();
        assert_eq!(u.id, "");
        assert_eq!(u.worker_type, "reloadnetworkall");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "UPID:",
            "upid:pve:00001234:00ABCDEF:6600AAAA:qmstart:100:root@pam:",
            "UPID:pve:00001234:00ABCDEF:6600AAAA:qmstart:100:root@pam",
            "UPID:pve:XYZ:00ABCDEF:6600AAAA:qmstart:100:root@pam:",
            "UPID::00001234:00ABCDEF:6600AAAA:qmstart:100:root@pam:",
            "UPID:pve:00001234:00ABCDEF:6600AAAA:qmstart:100:root:",
            "UPID:pve:00001234:00ABCDEF:6600AAAA",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "accepted {bad:?}");
        }
    }
}
