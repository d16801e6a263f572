//! A node's boots: down, maintenance mode on its maintenance address, running with its
//! configuration (mTLS, trustd for workers, etcd membership, the VIP), re-listening after a
//! configuration change.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    certs, lock, net, reachable, service, EmulatorError, Fleet, NodeConfig, Stage, TalosNode,
    ANSWER_GRACE,
};

impl TalosNode {
    /// Takes the listener down and bumps the generation; returns the new generation.
    pub(super) async fn go_down(&self) -> u64 {
        let (l, generation, was_running) = {
            let mut st = lock(&self.inner.state);
            st.generation += 1;
            st.address = None;
            st.running_since = None;
            let was_running = st.stage == Stage::Running;
            st.stage = Stage::Rebooting;
            (st.listener.take(), st.generation, was_running)
        };
        self.inner.stage_tx.send_replace(Stage::Rebooting);
        if let Some(l) = l {
            l.stop().await;
        }
        if let Some(f) = self.fleet().filter(|_| was_running) {
            f.member_down(self.inner.id).await;
        }
        generation
    }

    pub(super) fn spawn_boot_maintenance(&self, extra_delay: Duration) {
        let node = self.clone();
        tokio::spawn(async move {
            let generation = node.go_down().await;
            node.next_boot();
            node.set_stage(Stage::Booting);
            tokio::time::sleep(extra_delay + node.timings().boot).await;
            if let Err(e) = node.start_maintenance(generation).await {
                tracing::warn!(
                    node = node.inner.id,
                    "talos emulator: maintenance boot failed: {e}"
                );
                node.set_stage(Stage::Stopped);
            }
        });
    }

    async fn start_maintenance(&self, generation: u64) -> Result<(), EmulatorError> {
        let fleet = self.fleet().ok_or(EmulatorError::FleetGone)?;
        let Some(ip) = reachable(self.inner.maintenance) else {
            // Up in maintenance mode, but with no address anybody can reach.
            let mut st = lock(&self.inner.state);
            if st.generation == generation {
                st.config = None;
                st.stage = Stage::Maintenance;
                drop(st);
                tracing::warn!(
                    node = self.inner.id,
                    "talos emulator: no IPv4 address (no DHCP, no platform network config)"
                );
                self.inner.stage_tx.send_replace(Stage::Maintenance);
            }
            return Ok(());
        };
        let cert = certs::maintenance_cert(IpAddr::V4(ip)).map_err(EmulatorError::Tls)?;
        let tls = net::server_tls(&cert.crt, &cert.key, true).map_err(EmulatorError::Tls)?;
        let addr = SocketAddr::new(IpAddr::V4(ip), fleet.opts.api_port);
        let svc = service::NodeService::new(self.clone(), false, generation);
        let l = net::serve_grpc(addr, tls, svc)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let mut st = lock(&self.inner.state);
        if st.generation != generation {
            return Ok(()); // superseded (powered off meanwhile); `l` drops and stops
        }
        st.config = None;
        st.listener = Some(l);
        st.address = Some(ip);
        st.stage = Stage::Maintenance;
        drop(st);
        self.inner.stage_tx.send_replace(Stage::Maintenance);
        Ok(())
    }

    pub(super) fn spawn_reboot_into(&self, cfg: Arc<NodeConfig>, delay: Duration) {
        let node = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let generation = node.go_down().await;
            node.next_boot();
            lock(&node.inner.state).config = Some(cfg.clone());
            tokio::time::sleep(node.timings().reboot).await;
            if let Err(e) = node.start_running(generation, cfg).await {
                tracing::warn!(node = node.inner.id, "talos emulator: boot failed: {e}");
                node.set_stage(Stage::Stopped);
            }
        });
    }

    async fn start_running(
        &self,
        generation: u64,
        cfg: Arc<NodeConfig>,
    ) -> Result<(), EmulatorError> {
        let fleet = self.fleet().ok_or(EmulatorError::FleetGone)?;
        let Some(ip) = reachable(cfg.address.or(self.inner.maintenance)) else {
            tracing::warn!(
                node = self.inner.id,
                "talos emulator: configured node has no loopback IPv4 address to answer on"
            );
            return Ok(());
        };
        let ca_key = match cfg.os_ca_key.clone() {
            Some(k) => {
                lock(&fleet.trustd).insert(cfg.os_ca_crt.clone(), k.clone());
                k
            }
            None => match self.wait_trustd(&fleet, &cfg.os_ca_crt, generation).await {
                Some(k) => k,
                None => return Ok(()), // superseded while waiting
            },
        };
        let cert = certs::apid_cert(&cfg.os_ca_crt, &ca_key, &[IpAddr::V4(ip)], &cfg.hostname)
            .map_err(EmulatorError::Tls)?;
        let tls =
            net::server_mtls(&cert.crt, &cert.key, &cfg.os_ca_crt).map_err(EmulatorError::Tls)?;
        let addr = SocketAddr::new(IpAddr::V4(ip), fleet.opts.api_port);
        let svc = service::NodeService::new(self.clone(), true, generation);
        let l = net::serve_grpc(addr, tls, svc)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        {
            let mut st = lock(&self.inner.state);
            if st.generation != generation {
                return Ok(());
            }
            st.listener = Some(l);
            st.address = Some(ip);
            st.running_since = Some(Instant::now());
            st.stage = Stage::Running;
            st.os.upgrading = false;
        }
        self.upgrade_finished();
        if let Some(l) = fleet.lose_if_no_data(&cfg.cluster_id) {
            l.stop().await;
        }
        if cfg.control_plane {
            fleet.join(self, &cfg, ip);
            // A member back up takes the VIP again when nothing holds it.
            if let (Some(vip), Some(key)) = (cfg.vip, cfg.k8s_ca_key.clone()) {
                if fleet.is_member(&cfg.cluster_id, self.inner.id) {
                    let node = self.clone();
                    let (cid, crt) = (cfg.cluster_id.clone(), cfg.k8s_ca_crt.clone());
                    tokio::spawn(async move {
                        service::start_kube_api(node, cid, vip, crt, key).await;
                    });
                }
            }
        }
        // The kubelet starts and registers its Node (once the cluster is bootstrapped).
        fleet.register_kubelets(&cfg.cluster_id);
        self.inner.stage_tx.send_replace(Stage::Running);
        Ok(())
    }

    /// A worker has no OS CA key: its apid certificate comes from trustd on a control plane
    /// of the cluster. Waits (like a real worker) until one has been configured.
    async fn wait_trustd(&self, fleet: &Fleet, ca_crt: &str, generation: u64) -> Option<String> {
        loop {
            if let Some(k) = lock(&fleet.trustd).get(ca_crt).cloned() {
                return Some(k);
            }
            if lock(&self.inner.state).generation != generation {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Restarts the listener on the (possibly new) address/certificate without a reboot.
    pub(super) fn spawn_relisten(&self, cfg: Arc<NodeConfig>) {
        let node = self.clone();
        tokio::spawn(async move {
            // Let the ApplyConfiguration answer reach the client first.
            tokio::time::sleep(ANSWER_GRACE).await;
            let (l, generation) = {
                let mut st = lock(&node.inner.state);
                st.generation += 1;
                (st.listener.take(), st.generation)
            };
            if let Some(l) = l {
                l.stop().await;
            }
            let since = lock(&node.inner.state).running_since;
            if let Err(e) = node.start_running(generation, cfg).await {
                tracing::warn!(node = node.inner.id, "talos emulator: relisten failed: {e}");
            }
            if since.is_some() {
                lock(&node.inner.state).running_since = since;
            }
        });
    }
}
