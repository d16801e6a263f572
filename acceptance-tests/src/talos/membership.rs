//! etcd membership of the emulated clusters: members, the membership log with quorum, joins
//! and leaves, and the Kubernetes API `/readyz` verdict that follows from them.

use std::net::Ipv4Addr;

use super::{lock, splitmix, Fleet, NodeConfig, Stage, TalosNode};

/// An etcd member of an emulated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub id: u64,
    /// Hostname of the node.
    pub hostname: String,
    /// Node id in the fleet.
    pub node: u32,
    /// Node address.
    pub ip: Ipv4Addr,
}

/// What happened to an etcd member (see
/// [`TalosFleet::membership_log`](super::TalosFleet::membership_log)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Joined etcd (bootstrap, or a control plane of a bootstrapped cluster started).
    Joined,
    /// Left etcd (leave, member removal, graceful reset).
    Left,
    /// A member's machine went down (reboot, power off, reset) and stays a member.
    Down,
    /// A member's machine is running again.
    Up,
}

/// One entry of a cluster's etcd membership log: the change and the membership after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipEvent {
    /// `cluster.id`.
    pub cluster_id: String,
    /// What happened.
    pub change: MembershipChange,
    /// Hostname of the member it happened to.
    pub hostname: String,
    /// Members after the change.
    pub members: usize,
    /// Members whose machine is running after the change.
    pub up: usize,
}

impl MembershipEvent {
    /// Whether etcd had quorum after the change: a majority of its members up.
    pub fn has_quorum(&self) -> bool {
        self.members > 0 && self.up * 2 > self.members
    }
}

impl Fleet {
    /// How many of `members` have their machine running.
    fn members_up(&self, members: &[Member]) -> usize {
        members
            .iter()
            .filter(|m| {
                self.node_by_id(m.node)
                    .is_some_and(|n| n.stage() == Stage::Running)
            })
            .count()
    }

    pub(super) fn readyz(&self, cluster_id: &str) -> Result<(), String> {
        let members: Vec<Member> = {
            let cl = lock(&self.clusters);
            let c = cl.get(cluster_id).ok_or("etcd: cluster not bootstrapped")?;
            if !c.bootstrapped {
                return Err("etcd: cluster not bootstrapped".into());
            }
            c.members.values().cloned().collect()
        };
        let up = self.members_up(&members);
        if members.is_empty() || up * 2 <= members.len() {
            return Err(format!(
                "etcd: no quorum ({up} of {} members up)",
                members.len()
            ));
        }
        Ok(())
    }

    /// Appends `change` of `hostname` to the membership log with the membership as it is
    /// now; returns how many members are up.
    fn log_membership(&self, cluster_id: &str, change: MembershipChange, hostname: &str) -> usize {
        let members: Vec<Member> = lock(&self.clusters)
            .get(cluster_id)
            .map(|c| c.members.values().cloned().collect())
            .unwrap_or_default();
        let up = self.members_up(&members);
        lock(&self.membership_log).push(MembershipEvent {
            cluster_id: cluster_id.to_string(),
            change,
            hostname: hostname.to_string(),
            members: members.len(),
            up,
        });
        up
    }

    /// The clusters `node_id` is an etcd member of, with its member hostname.
    fn memberships(&self, node_id: u32) -> Vec<(String, String)> {
        lock(&self.clusters)
            .iter()
            .flat_map(|(id, c)| {
                c.members
                    .values()
                    .filter(|m| m.node == node_id)
                    .map(|m| (id.clone(), m.hostname.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A member's machine went down. With no member left running, nothing holds the
    /// cluster's VIP any more: its Kubernetes API listener is released.
    pub(super) async fn member_down(&self, node_id: u32) {
        for (cluster_id, hostname) in self.memberships(node_id) {
            if self.log_membership(&cluster_id, MembershipChange::Down, &hostname) > 0 {
                continue;
            }
            let vip = lock(&self.clusters)
                .get_mut(&cluster_id)
                .and_then(|c| c.vip.take());
            if let Some(l) = vip {
                l.stop().await;
            }
        }
    }

    /// Adds the node as etcd member of its (bootstrapped) cluster; a member that is already
    /// one is logged as up again.
    pub(super) fn join(&self, node: &TalosNode, cfg: &NodeConfig, ip: Ipv4Addr) {
        let mut cl = lock(&self.clusters);
        let Some(c) = cl.get_mut(&cfg.cluster_id) else {
            return;
        };
        if !c.bootstrapped {
            return;
        }
        if c.members.values().any(|m| m.node == node.inner.id) {
            drop(cl);
            self.log_membership(&cfg.cluster_id, MembershipChange::Up, &cfg.hostname);
            return;
        }
        let id = splitmix(
            self.opts.faults.seed ^ (u64::from(node.inner.id) << 32) ^ c.members.len() as u64,
        ) | 1;
        c.members.insert(
            id,
            Member {
                id,
                hostname: cfg.hostname.clone(),
                node: node.inner.id,
                ip,
            },
        );
        drop(cl);
        self.log_membership(&cfg.cluster_id, MembershipChange::Joined, &cfg.hostname);
    }

    pub(super) fn is_member(&self, cluster_id: &str, node_id: u32) -> bool {
        lock(&self.clusters)
            .get(cluster_id)
            .is_some_and(|c| c.bootstrapped && c.members.values().any(|m| m.node == node_id))
    }

    pub(super) fn leave(&self, cluster_id: &str, node_id: u32) -> bool {
        let mut cl = lock(&self.clusters);
        let Some(c) = cl.get_mut(cluster_id) else {
            return false;
        };
        let hostname = c
            .members
            .values()
            .find(|m| m.node == node_id)
            .map(|m| m.hostname.clone());
        let before = c.members.len();
        c.members.retain(|_, m| m.node != node_id);
        let removed = c.members.len() != before;
        if c.members.is_empty() && removed {
            // Every member gone: the cluster can be bootstrapped again.
            c.bootstrapped = false;
            c.vip = None;
        }
        drop(cl);
        if let Some(h) = hostname.filter(|_| removed) {
            self.log_membership(cluster_id, MembershipChange::Left, &h);
        }
        removed
    }
}
