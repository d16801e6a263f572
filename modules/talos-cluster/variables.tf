# ---------------------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------------------

variable "cluster_name" {
  type        = string
  description = "Name of the Talos/Kubernetes cluster (lower-case letters, digits and '-'). Also the talosconfig context name."
  default     = "waddle"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.cluster_name))
    error_message = "The cluster_name must be a DNS label: lower-case letters, digits and '-', at most 63 characters."
  }
}

variable "talos_version" {
  type        = string
  description = "Talos Linux version of the nodes (the v1.12 and v1.13 series are supported)."
  default     = "v1.12.11"

  validation {
    condition     = can(regex("^v1\\.1[23]\\.[0-9]+$", var.talos_version))
    error_message = "The talos_version must be a Talos v1.12 or v1.13 release, e.g. v1.12.11."
  }
}

variable "config_contract" {
  type        = string
  description = "Talos configuration contract (v1.12 or v1.13). Null: the minor release of talos_version at create, then kept across upgrades; set it after an upgrade to re-render the configurations for the new release."
  default     = null

  validation {
    condition     = var.config_contract == null || can(regex("^v1\\.1[23]$", var.config_contract))
    error_message = "The config_contract must be v1.12 or v1.13."
  }
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes version (without the leading v). Talos v1.12 supports 1.30 to 1.35, v1.13 1.31 to 1.36."
  default     = "1.35.0"

  validation {
    condition     = can(regex("^1\\.3[0-6]\\.[0-9]+$", var.kubernetes_version))
    error_message = "The kubernetes_version must be 1.30.x to 1.36.x (as the Talos release supports), e.g. 1.35.0."
  }
}

variable "extensions" {
  type        = list(string)
  description = "Official Talos system extensions baked into the Image Factory image."
  default     = ["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools"]
}

# ---------------------------------------------------------------------------------------
# Network (the private bridge)
# ---------------------------------------------------------------------------------------

variable "control_plane_addresses" {
  type        = list(string)
  description = "Static IPv4 addresses of the control-plane nodes (without prefix), one node per address. Use an odd count so etcd keeps quorum."
  default     = ["10.10.0.10", "10.10.0.11", "10.10.0.12"]

  validation {
    condition     = length(var.control_plane_addresses) > 0 && alltrue([for a in var.control_plane_addresses : can(cidrhost("${a}/32", 0))])
    error_message = "The control_plane_addresses must be a non-empty list of IPv4 addresses."
  }
}

variable "prefix_length" {
  type        = number
  description = "Prefix length of the private network the nodes' addresses are in."
  default     = 24

  validation {
    condition     = var.prefix_length >= 8 && var.prefix_length <= 30 && floor(var.prefix_length) == var.prefix_length
    error_message = "The prefix_length must be an integer between 8 and 30."
  }
}

variable "gateway" {
  type        = string
  description = "Default gateway of the nodes (the Proxmox host's address on the private bridge, which NATs)."
  default     = "10.10.0.1"

  validation {
    condition     = can(cidrhost("${var.gateway}/32", 0))
    error_message = "The gateway must be an IPv4 address."
  }
}

variable "vip" {
  type        = string
  description = "Shared layer-2 virtual IP of the Kubernetes API, held by one control plane at a time. Must be in the nodes' subnet and unused."
  default     = "10.10.0.20"

  validation {
    condition     = can(cidrhost("${var.vip}/32", 0))
    error_message = "The vip must be an IPv4 address."
  }
}

variable "nameservers" {
  type        = list(string)
  description = "DNS servers of the nodes."
  default     = ["1.1.1.1", "8.8.8.8"]
}

variable "cert_sans" {
  type        = list(string)
  description = "Extra names and addresses for the Kubernetes API server and Talos API certificates (the VIP and node addresses are always included)."
  default     = []
}

# ---------------------------------------------------------------------------------------
# Proxmox placement
# ---------------------------------------------------------------------------------------

variable "proxmox_node" {
  type        = string
  description = "Proxmox VE node the VMs are created on; null (the default) for the provider's node (`node` in the provider block or PROXMOX_VE_NODE)."
  default     = null
}

variable "storage" {
  type        = string
  description = "Proxmox storage for the VM disks and their cloud-init drives (needs the images content type). The Talos disk image is downloaded to the resource's image_storage default, local."
  default     = "local-lvm"
}

variable "bridge" {
  type        = string
  description = "Proxmox bridge of the private network the nodes are attached to."
  default     = "vmbr1"
}

variable "vmid_base" {
  type        = number
  description = "VMID of the first control plane; the others follow (base, base+1, ...). Workers use their own vmid."
  default     = 110

  validation {
    condition     = var.vmid_base >= 100 && var.vmid_base <= 999999000 && floor(var.vmid_base) == var.vmid_base
    error_message = "The vmid_base must be an integer of at least 100."
  }
}

variable "mac_prefix" {
  type        = string
  description = "First three octets of the nodes' fixed MAC addresses; the last three encode the VMID (bc:24:11 is Proxmox's OUI)."
  default     = "bc:24:11"

  validation {
    condition     = can(regex("^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$", var.mac_prefix))
    error_message = "The mac_prefix must be three lower-case hex octets, e.g. bc:24:11."
  }
}

variable "cores" {
  type        = number
  description = "vCPUs per control-plane VM."
  default     = 3
}

variable "memory_mib" {
  type        = number
  description = "Memory per control-plane VM, in MiB."
  default     = 8192
}

variable "disk_size_gib" {
  type        = number
  description = "System disk size per control-plane VM, in GiB."
  default     = 10
}

variable "install_disk" {
  type        = string
  description = "Disk Talos installs to inside the VM."
  default     = "/dev/sda"
}

variable "workers" {
  type = map(object({
    address = string
    vmid    = number
    cores   = number
    memory  = number
    disk    = number
  }))
  description = "Optional worker nodes by name: address (IPv4 without prefix), vmid, cores, memory (MiB) and disk (GiB). The original layout has none."
  default     = {}
}

# ---------------------------------------------------------------------------------------
# Cluster options
# ---------------------------------------------------------------------------------------

variable "cni" {
  type        = string
  description = "CNI Talos installs: none (bring your own, e.g. Cilium through inline_manifests) or flannel."
  default     = "none"

  validation {
    condition     = contains(["none", "flannel"], var.cni)
    error_message = "The cni must be \"none\" or \"flannel\"."
  }
}

variable "kube_proxy" {
  type        = bool
  description = "Run kube-proxy. Off by default: the CNI is expected to replace it."
  default     = false
}

variable "allow_scheduling_on_control_planes" {
  type        = bool
  description = "Allow workloads on the control-plane nodes."
  default     = true
}

variable "inline_manifests" {
  type = list(object({
    name     = string
    contents = string
  }))
  description = "Kubernetes manifests applied by Talos at bootstrap (e.g. the CNI)."
  default     = []
}

variable "config_patches" {
  type        = list(string)
  description = "Talos config patches applied to every node (strategic-merge YAML or JSON6902)."
  default     = []
}

variable "node_config_patches" {
  type        = map(list(string))
  description = "Talos config patches for single nodes, by node name (cp1, cp2, ... and the worker names), applied after config_patches."
  default     = {}
}

variable "node_labels" {
  type        = map(map(string))
  description = "Kubernetes labels of single nodes, by node name (cp1, cp2, ... and the worker names)."
  default     = {}
}

variable "disk_encryption" {
  type        = bool
  description = "Encrypt the STATE and EPHEMERAL volumes with LUKS2, key sealed to the VM's TPM (adds a TPM to each VM)."
  default     = false
}

variable "secureboot" {
  type        = bool
  description = "Boot the SecureBoot image with UEFI and pre-enrolled keys."
  default     = false
}

variable "on_destroy" {
  type        = string
  description = "How nodes are reset before their VMs are deleted: graceful, forced or none."
  default     = "graceful"

  validation {
    condition     = contains(["graceful", "forced", "none"], var.on_destroy)
    error_message = "The on_destroy must be graceful, forced or none."
  }
}

variable "timeouts" {
  type        = map(string)
  description = "Deadlines of the resource's operations as durations such as `30m` or `1h30m`; keys `create`, `update`, `delete`, each optional. Defaults: create: 30m (install, bootstrap, health), update: 30m, delete: 10m."
  default     = {}

  validation {
    condition     = length(setsubtract(keys(var.timeouts), ["create", "update", "delete"])) == 0
    error_message = "The keys of timeouts are create, update and delete."
  }
}

variable "etcd_backup" {
  type = object({
    directory = string
    when      = list(string)
    keep      = number
  })
  description = "etcd snapshots written by the provider to a local directory (each verified by its SHA-256): `directory` (created if missing), `when` (any of `before_upgrade`, `before_destroy`, `every_apply`; null for before_upgrade and before_destroy) and `keep` (the newest snapshots kept; null for 5). null (the default) takes none."
  default     = null

  validation {
    condition = var.etcd_backup == null ? true : (
      try(length(var.etcd_backup.directory) > 0, false) &&
      alltrue([for w in(var.etcd_backup.when == null ? [] : var.etcd_backup.when) : contains(["before_upgrade", "before_destroy", "every_apply"], w)]) &&
      (var.etcd_backup.keep == null ? true : var.etcd_backup.keep >= 1 && var.etcd_backup.keep <= 1000 && floor(var.etcd_backup.keep) == var.etcd_backup.keep)
    )
    error_message = "The etcd_backup needs a directory, when may only hold before_upgrade, before_destroy and every_apply, and keep must be an integer between 1 and 1000."
  }
}
