# The original waddle layout: three Talos control planes on the private bridge, a layer-2
# VIP for the Kubernetes API, no CNI and no kube-proxy (the platform installs its own),
# workloads allowed on the control planes.

locals {
  endpoint = "https://${var.vip}:6443"

  control_planes = {
    for i, address in var.control_plane_addresses : format("cp%d", i + 1) => {
      address = address
      vmid    = var.vmid_base + i
      cores   = var.cores
      memory  = var.memory_mib
      disk    = var.disk_size_gib
    }
  }

  # Fixed MACs derived from the VMID: <prefix>:<vmid / 65536>:<vmid / 256 % 256>:<vmid % 256>.
  mac = {
    for name, n in merge(local.control_planes, var.workers) : name => format(
      "%s:%02x:%02x:%02x", var.mac_prefix,
      floor(n.vmid / 65536) % 256, floor(n.vmid / 256) % 256, n.vmid % 256,
    )
  }

  # Per-node settings for a node that does not exist would be silently ignored, so the plan
  # fails instead, showing the names (Terraform 1.0 has no preconditions: the lookup of a
  # missing key is the error).
  unknown_node_keys = setsubtract(
    concat(keys(var.node_config_patches), keys(var.node_labels)),
    concat(keys(local.control_planes), keys(var.workers)),
  )
  node_keys_checked = { ok = {} }[length(local.unknown_node_keys) == 0 ? "ok" : "node_config_patches / node_labels name no node of this cluster: ${join(", ", sort(local.unknown_node_keys))}"]

  nodes = merge(
    local.node_keys_checked,
    {
      for name, n in local.control_planes : name => {
        role           = "controlplane"
        address        = "${n.address}/${var.prefix_length}"
        gateway        = var.gateway
        mac            = local.mac[name]
        install_disk   = var.install_disk
        config_patches = lookup(var.node_config_patches, name, [])
        node_labels    = lookup(var.node_labels, name, null)
        proxmox = {
          node      = var.proxmox_node
          storage   = var.storage
          bridge    = var.bridge
          vmid      = n.vmid
          cores     = n.cores
          memory    = n.memory
          disk_size = n.disk
        }
      }
    },
    {
      for name, n in var.workers : name => {
        role           = "worker"
        address        = "${n.address}/${var.prefix_length}"
        gateway        = var.gateway
        mac            = local.mac[name]
        install_disk   = var.install_disk
        config_patches = lookup(var.node_config_patches, name, [])
        node_labels    = lookup(var.node_labels, name, null)
        proxmox = {
          node      = var.proxmox_node
          storage   = var.storage
          bridge    = var.bridge
          vmid      = n.vmid
          cores     = n.cores
          memory    = n.memory
          disk_size = n.disk
        }
      }
    },
  )
}

data "waddle_talos_image" "this" {
  talos_version = var.talos_version
  extensions    = var.extensions
  secureboot    = var.secureboot
  platform      = "nocloud"
  arch          = "amd64"
}

resource "waddle_talos_cluster" "this" {
  cluster_name       = var.cluster_name
  endpoint           = local.endpoint
  vip                = var.vip
  talos_version      = var.talos_version
  kubernetes_version = var.kubernetes_version
  config_contract    = var.config_contract

  image = {
    installer      = data.waddle_talos_image.this.installer_image
    disk_image_url = data.waddle_talos_image.this.disk_image_url
  }

  cni                                = var.cni
  kube_proxy                         = var.kube_proxy
  allow_scheduling_on_control_planes = var.allow_scheduling_on_control_planes
  cert_sans                          = var.cert_sans
  nameservers                        = var.nameservers
  inline_manifests                   = var.inline_manifests
  config_patches                     = var.config_patches
  disk_encryption                    = var.disk_encryption
  secureboot                         = var.secureboot
  on_destroy                         = var.on_destroy
  etcd_backup                        = var.etcd_backup

  nodes = local.nodes

  # null when none is set: an imported resource then plans no change.
  timeouts = length(var.timeouts) == 0 ? null : {
    create = lookup(var.timeouts, "create", null)
    update = lookup(var.timeouts, "update", null)
    delete = lookup(var.timeouts, "delete", null)
  }
}
