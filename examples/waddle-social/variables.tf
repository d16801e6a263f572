# The original root module's variable names where they still make sense.

# --- Proxmox ---------------------------------------------------------------------------------

variable "proxmox_endpoint" {
  type        = string
  description = "Proxmox API endpoint URL, e.g. https://pve.example.org:8006; null for PROXMOX_VE_ENDPOINT."
  default     = null
}

variable "proxmox_api_token" {
  type        = string
  description = "Proxmox API token, user@realm!token-name=secret; null for PROXMOX_VE_API_TOKEN."
  default     = null
  sensitive   = true
}

variable "proxmox_ca_cert" {
  type        = string
  description = "PEM of the CA that signed the Proxmox API certificate (or a path to it); null for PROXMOX_VE_CA_CERT, else the system roots."
  default     = null
}

variable "proxmox_node_name" {
  type        = string
  description = "Name of the Proxmox node; null for PROXMOX_VE_NODE."
  default     = null
}

variable "datastore_id" {
  type        = string
  description = "Proxmox storage for VM disks."
  default     = "local-lvm"
}

# --- Public side -----------------------------------------------------------------------------

variable "public_ip" {
  type        = string
  description = "Public IP address of the SNI proxy VM (the host's additional public address)."
}

variable "public_prefix_length" {
  type        = number
  description = "Prefix length of the public network."
  default     = 24
}

variable "public_gateway" {
  type        = string
  description = "Public gateway (the default route of the SNI proxy)."
}

variable "domain" {
  type        = string
  description = "Base domain: teleport.<domain>, proxmox.<domain>, *.apps.<domain>."
  default     = "waddle.social"
}

variable "extra_sni_routes" {
  type = list(object({
    hostnames      = list(string)
    backend        = string
    proxy_protocol = bool
    check          = bool
  }))
  description = "SNI routes besides Teleport's and *.apps.<domain> (see modules/haproxy extra_routes)."
  default     = []
}

# --- Private network -------------------------------------------------------------------------

variable "internal_network" {
  type        = string
  description = "Internal network CIDR (the SDN vnet vmbr1)."
  default     = "10.10.0.0/24"
}

variable "internal_gateway" {
  type        = string
  description = "Internal gateway IP (the Proxmox host on the internal network, NAT); also where the Proxmox UI is reached from Teleport."
  default     = "10.10.0.1"
}

variable "haproxy_internal_ip" {
  type        = string
  description = "SNI proxy VM's internal IP."
  default     = "10.10.0.3"
}

variable "teleport_internal_ip" {
  type        = string
  description = "Teleport VM's internal IP."
  default     = "10.10.0.2"
}

variable "cilium_gateway_vip" {
  type        = string
  description = "VIP of the Kubernetes gateway (*.apps.<domain> and port 80 go there)."
  default     = "10.10.0.30"
}

variable "ssh_public_key" {
  type        = string
  description = "SSH public key of the admin user of the SNI proxy and Teleport VMs."
}

# --- Host firewall (opt-in) ------------------------------------------------------------------

variable "firewall_enabled" {
  type        = bool
  description = "Manage the Proxmox host firewall (see modules/network)."
  default     = false
}

variable "operator_api_sources" {
  type        = list(string)
  description = "Addresses that may reach the Proxmox API while the firewall is on; include your own."
  default     = []
}

variable "operator_ip" {
  type        = string
  description = "Operator's public IP for SSH to the host while the firewall is on; null for none."
  default     = null
}

variable "operator_access_expires" {
  type        = string
  description = "RFC 3339 time after which the operator's SSH rule is removed (the temporary bootstrap access); null for a permanent rule."
  default     = null
}

# --- Talos -----------------------------------------------------------------------------------

variable "talos_node_ips" {
  type        = list(string)
  description = "Static IPs of the Talos control planes."
  default     = ["10.10.0.10", "10.10.0.11", "10.10.0.12"]
}

variable "talos_vip" {
  type        = string
  description = "Talos shared VIP of the Kubernetes API."
  default     = "10.10.0.20"
}

variable "talos_gateway" {
  type        = string
  description = "Default gateway of the Talos nodes; null for internal_gateway."
  default     = null
}

variable "talos_config_patches" {
  type        = list(string)
  description = "Talos machine configuration patches for every node."
  default     = []
}

# --- Teleport --------------------------------------------------------------------------------

variable "etcd_snapshot_directory" {
  type        = string
  description = "Local directory the provider writes etcd snapshots to, before every Talos/Kubernetes upgrade and before destroy (each verified by its SHA-256); null for none."
  default     = "etcd-snapshots"
}

variable "etcd_snapshots_kept" {
  type        = number
  description = "How many etcd snapshots are kept in etcd_snapshot_directory (the oldest are deleted)."
  default     = 5
}

variable "teleport_github_org" {
  type        = string
  description = "GitHub organization for Teleport SSO."
  default     = "waddle-social"
}

variable "teleport_github_client_id" {
  type        = string
  description = "GitHub OAuth app client ID for Teleport."
}

variable "teleport_github_client_secret" {
  type        = string
  description = "GitHub OAuth app client secret for Teleport (TF_VAR_teleport_github_client_secret)."
  sensitive   = true
}

variable "teleport_teams_to_roles" {
  type = list(object({
    team  = string
    roles = list(string)
  }))
  description = "Teams of teleport_github_org and the Teleport roles they get."
  default = [
    { team = "infra", roles = ["infra-admin"] },
  ]
}

variable "teleport_apps" {
  type = list(object({
    name                 = string
    uri                  = string
    public_addr          = string
    insecure_skip_verify = bool
    labels               = map(string)
  }))
  description = "Apps published through Teleport besides the Proxmox UI (see modules/teleport apps)."
  default     = []
}

variable "teleport_proxy_protocol" {
  type        = bool
  description = "The SNI proxy sends PROXY protocol v2 to Teleport and Teleport expects it (both from this one value)."
  default     = false
}

variable "acme_email" {
  type        = string
  description = "Email for Teleport's Let's Encrypt account; null for admin@<domain>."
  default     = null
}
