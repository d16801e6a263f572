//! Talos OS upgrades: `MachineService.Upgrade` (Talos v1.12) and, for nodes reporting
//! v1.13 or later (where `Upgrade` is deprecated), `ImageService.Pull` followed by
//! `LifecycleService.Upgrade`; the boot ID that tells a reboot happened.

use futures::StreamExt as _;

use super::proto::common::{ContainerDriver, ContainerdInstance, ContainerdNamespace};
use super::proto::machine::{
    self as pm, image_service_client::ImageServiceClient,
    lifecycle_service_client::LifecycleServiceClient,
};
use super::{TalosClient, TalosError};

/// The file holding the kernel's boot ID (a new random UUID at every boot).
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// How the node reboots into the new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebootMode {
    /// kexec where possible.
    #[default]
    Default,
    /// A full power cycle.
    Powercycle,
}

impl RebootMode {
    /// `default` / `powercycle`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(RebootMode::Default),
            "powercycle" => Some(RebootMode::Powercycle),
            _ => None,
        }
    }
}

/// Which API upgrades a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeApi {
    /// `MachineService.Upgrade` (Talos v1.12 and earlier).
    Machine,
    /// `ImageService.Pull` + `LifecycleService.Upgrade` (Talos v1.13 and later).
    Lifecycle,
}

impl UpgradeApi {
    /// The API for a node reporting version `tag` (`v1.12.4`): decided by what the node
    /// runs, not by the configuration. An unparsable tag gets the v1.12 API.
    pub fn for_version(tag: &str) -> Self {
        let t = tag.trim_start_matches('v');
        let mut it = t.split(['.', '-']);
        let major = it.next().and_then(|x| x.parse::<u32>().ok());
        let minor = it.next().and_then(|x| x.parse::<u32>().ok());
        match (major, minor) {
            (Some(ma), Some(mi)) if ma > 1 || (ma == 1 && mi >= 13) => UpgradeApi::Lifecycle,
            _ => UpgradeApi::Machine,
        }
    }
}

/// An upgrade to request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpgradeRequest {
    /// Installer image reference.
    pub image: String,
    /// Keep the EPHEMERAL partition.
    pub preserve: bool,
    /// Install at the next boot.
    pub stage: bool,
    /// Skip Talos's etcd checks (never set by waddle).
    pub force: bool,
    /// Reboot mode.
    pub reboot_mode: RebootMode,
}

fn system_containerd() -> Option<ContainerdInstance> {
    Some(ContainerdInstance {
        driver: ContainerDriver::Containerd as i32,
        namespace: ContainerdNamespace::NsSystem as i32,
    })
}

impl TalosClient {
    /// The node's boot ID (changes at every boot).
    pub async fn boot_id(&self) -> Result<String, TalosError> {
        let b = self.read_file(BOOT_ID_PATH).await?;
        Ok(String::from_utf8_lossy(&b).trim().to_string())
    }

    /// `MachineService.Upgrade`: the node validates (pulls) the image and its etcd, answers,
    /// then installs and reboots. Returns the acknowledgement.
    pub async fn upgrade(&self, req: &UpgradeRequest) -> Result<String, TalosError> {
        const M: &str = "Upgrade";
        let mut c = self.inner.clone();
        let pb = pm::UpgradeRequest {
            image: req.image.clone(),
            preserve: req.preserve,
            stage: req.stage,
            force: req.force,
            reboot_mode: match req.reboot_mode {
                RebootMode::Default => pm::upgrade_request::RebootMode::Default,
                RebootMode::Powercycle => pm::upgrade_request::RebootMode::Powercycle,
            } as i32,
        };
        self.run(M, async {
            let r = c.upgrade(pb).await.map_err(self.rpc(M))?.into_inner();
            let msg = r
                .messages
                .into_iter()
                .next()
                .ok_or_else(|| self.protocol(M, "no message in reply"))?;
            self.check_meta(M, msg.metadata.as_ref())?;
            Ok(msg.ack)
        })
        .await
    }

    /// `ImageService.Pull` into the system containerd; returns the pulled image's name.
    pub async fn pull_image(&self, image: &str) -> Result<String, TalosError> {
        const M: &str = "ImageService.Pull";
        let mut c = ImageServiceClient::new(self.channel.clone());
        let req = pm::ImageServicePullRequest {
            containerd: system_containerd(),
            image_ref: image.to_string(),
        };
        self.run(M, async {
            let mut s = c.pull(req).await.map_err(self.rpc(M))?.into_inner();
            let mut name = None;
            while let Some(item) = s.next().await {
                let m = item.map_err(self.rpc(M))?;
                if let Some(pm::image_service_pull_response::Response::Name(n)) = m.response {
                    name = Some(n);
                }
            }
            name.ok_or_else(|| self.protocol(M, "the stream ended without the image name"))
        })
        .await
    }

    /// `LifecycleService.Upgrade` from a pulled image: streams the installer's progress and
    /// ends with its exit code (0: installed; the node then reboots).
    pub async fn lifecycle_upgrade(&self, image_name: &str) -> Result<(), TalosError> {
        const M: &str = "LifecycleService.Upgrade";
        let mut c = LifecycleServiceClient::new(self.channel.clone());
        let req = pm::LifecycleServiceUpgradeRequest {
            containerd: system_containerd(),
            source: Some(pm::InstallArtifactsSource {
                image_name: image_name.to_string(),
            }),
        };
        self.run(M, async {
            let mut s = c.upgrade(req).await.map_err(self.rpc(M))?.into_inner();
            let mut last = String::new();
            while let Some(item) = s.next().await {
                let m = item.map_err(self.rpc(M))?;
                match m.progress.and_then(|p| p.response) {
                    Some(pm::lifecycle_service_install_progress::Response::Message(t)) => {
                        last = t;
                    }
                    Some(pm::lifecycle_service_install_progress::Response::ExitCode(0)) => {
                        return Ok(())
                    }
                    Some(pm::lifecycle_service_install_progress::Response::ExitCode(code)) => {
                        return Err(TalosError::Node {
                            method: M,
                            endpoint: self.endpoint,
                            message: format!("the installer exited with code {code}: {last}"),
                        })
                    }
                    None => {}
                }
            }
            Err(self.protocol(M, "the stream ended without the installer's exit code"))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_follows_the_reported_version() {
        assert_eq!(UpgradeApi::for_version("v1.12.11"), UpgradeApi::Machine);
        assert_eq!(UpgradeApi::for_version("v1.13.0"), UpgradeApi::Lifecycle);
        assert_eq!(
            UpgradeApi::for_version("v1.13.0-alpha.1"),
            UpgradeApi::Lifecycle
        );
        assert_eq!(UpgradeApi::for_version("v2.0.0"), UpgradeApi::Lifecycle);
        assert_eq!(UpgradeApi::for_version("garbage"), UpgradeApi::Machine);
    }
}
