# ---------------------------------------------------------------------------------------------
# Teleport
# ---------------------------------------------------------------------------------------------

variable "domain" {
  type        = string
  description = "Platform domain, e.g. \"waddle.social\". Teleport is published at teleport.<domain> (unless public_addr says otherwise), its apps at <app>.teleport.<domain>, the Proxmox UI at proxmox.<domain>."

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.domain))
    error_message = "The domain must be a lowercase DNS name with at least two labels and no trailing dot, e.g. \"example.org\"."
  }
}

variable "public_addr" {
  type        = string
  description = "Host name Teleport's proxy is reached at (port 443, through the SNI proxy); null (the default) for teleport.<domain>."
  default     = null
}

variable "cluster_name" {
  type        = string
  description = "Teleport cluster name; null (the default) for public_addr. Teleport cannot rename a cluster: changing it replaces the VM."
  default     = null
}

variable "teleport_version" {
  type        = string
  description = "Teleport Community version installed from Teleport's apt repository (\"18.x.y\", no \"v\"); null (the default) for the resource's pinned 18.x. A newer version within the same or the next major is applied in place."
  default     = null

  validation {
    condition     = var.teleport_version == null || can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.teleport_version))
    error_message = "The teleport_version must be a release such as \"18.2.0\" (no leading v)."
  }
}

variable "acme_email" {
  type        = string
  description = "Email for Let's Encrypt (Teleport's ACME, TLS-ALPN-01 through the SNI proxy); null (the default) turns ACME off and Teleport serves a self-signed certificate."
  default     = null
}

variable "local_auth" {
  type        = bool
  description = "Allow local Teleport users besides GitHub SSO (break-glass accounts made with tctl)."
  default     = false
}

variable "proxy_protocol" {
  type        = bool
  description = "Teleport expects a PROXY protocol v2 header from the SNI proxy. Set it from the same value as modules/haproxy teleport_proxy_protocol: a mismatch breaks every connection, and is refused at plan when sni_routes is given."
  default     = false
}

variable "sni_routes" {
  type = list(object({
    hostnames      = list(string)
    backend        = string
    proxy_protocol = bool
    check          = bool
  }))
  description = "The routes of the SNI proxy in front (modules/haproxy output routes); every route to this node's <address>:3080 must agree with proxy_protocol. null (the default): no check."
  default     = null
}

variable "github_org" {
  type        = string
  description = "GitHub organization whose teams are mapped to Teleport roles (teams_to_roles)."

  validation {
    condition     = can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,38})$", var.github_org))
    error_message = "The github_org must be a GitHub organization login: letters, digits and '-', at most 39 characters."
  }
}

variable "github_client_id" {
  type        = string
  description = "Client ID of the GitHub OAuth app (callback https://<public_addr>/v1/webapi/github/callback, see output github_callback_url)."
}

variable "github_client_secret" {
  type        = string
  description = "Client secret of the GitHub OAuth app. Written to the connector through the guest agent, never into the seed ISO; kept in the state (sensitive). For a write-only secret (Terraform/OpenTofu >= 1.11) use the waddle_teleport_node resource's github_client_secret_wo directly."
  sensitive   = true
}

variable "github_connector_name" {
  type        = string
  description = "Name of the GitHub auth connector (shown on the login page, used by `tsh login --auth`)."
  default     = "github"
}

variable "teams_to_roles" {
  type = list(object({
    team  = string
    roles = list(string)
  }))
  description = "Members of each team of github_org get these Teleport roles: a role defined in roles, or a built-in one (access, editor, auditor). At least one mapping."
  default = [
    { team = "infra", roles = ["infra-admin"] },
  ]

  validation {
    condition     = length(var.teams_to_roles) > 0 && alltrue([for m in var.teams_to_roles : length(m.roles) > 0])
    error_message = "At least one team mapping is required, and each maps its team to at least one role: GitHub SSO with no mapping lets nobody in."
  }
}

variable "roles" {
  type = map(object({
    logins            = list(string)
    kubernetes_groups = list(string)
    kubernetes_users  = list(string)
    node_labels       = map(string)
    app_labels        = map(string)
    kubernetes_labels = map(string)
  }))
  description = "Teleport roles created next to the connector, by name: the allow rules (logins on SSH nodes, Kubernetes groups and users, and the labels of the nodes, apps and Kubernetes clusters they reach; null for none). The default is the old setup's infra-admin: every node as waddle or root, every app, every cluster as system:masters."
  default = {
    infra-admin = {
      logins            = ["waddle", "root"]
      kubernetes_groups = ["system:masters"]
      kubernetes_users  = null
      node_labels       = { "*" = "*" }
      app_labels        = { "*" = "*" }
      kubernetes_labels = { "*" = "*" }
    }
  }
}

variable "ssh_labels" {
  type        = map(string)
  description = "Labels of the Teleport VM's own SSH service (matched by roles' node_labels)."
  default     = {}
}

variable "kubeconfig" {
  type        = string
  description = "Kubeconfig of the cluster Teleport gives access to (modules/talos-cluster output kubeconfig); null (the default) turns the Kubernetes service off. Written root-only on the VM through the guest agent; a new one is rotated in place."
  default     = null
  sensitive   = true
}

variable "apps" {
  type = list(object({
    name                 = string
    uri                  = string
    public_addr          = string
    insecure_skip_verify = bool
    labels               = map(string)
  }))
  description = "Apps published through Teleport besides the Proxmox UI: name, uri (http(s)://... or tcp://host:port, e.g. tcp://<talos vip>:50000 for talosctl through `tsh proxy app`), public_addr (null for <name>.<public_addr>; must be under domain), insecure_skip_verify, labels (null for none)."
  default     = []
}

variable "proxmox_ui_uri" {
  type        = string
  description = "Address of the Proxmox VE web UI on the private network, published as the app \"proxmox\" at proxmox.<domain> (certificate not verified: Proxmox's is self-signed); null for no Proxmox app."
  default     = "https://10.10.0.1:8006"
}

# ---------------------------------------------------------------------------------------------
# VM placement
# ---------------------------------------------------------------------------------------------

variable "name" {
  type        = string
  description = "VM name, hostname and Teleport node name."
  default     = "teleport"
}

variable "node" {
  type        = string
  description = "Proxmox node the VM runs on; null (the default) for the provider's node (`node` in the provider block or PROXMOX_VE_NODE)."
  default     = null
}

variable "vmid" {
  type        = number
  description = "Proxmox VM id; null lets the provider take the next free id."
  default     = null
}

variable "storage" {
  type        = string
  description = "Proxmox storage for the VM disk."
  default     = "local-lvm"
}

variable "image_storage" {
  type        = string
  description = "Proxmox storage the Debian cloud image is downloaded to (download-url) and the seed ISO uploaded to."
  default     = "local"
}

variable "image_url" {
  type        = string
  description = "Debian 12 cloud image (qcow2) downloaded by Proxmox with download-url."
  default     = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
}

variable "cores" {
  type        = number
  description = "vCPUs."
  default     = 2
}

variable "memory" {
  type        = number
  description = "Memory in MiB."
  default     = 2048
}

variable "disk_size" {
  type        = number
  description = "Root disk size in GiB."
  default     = 20
}

# ---------------------------------------------------------------------------------------------
# Network and access
# ---------------------------------------------------------------------------------------------

variable "private_bridge" {
  type        = string
  description = "Bridge of the VM's only NIC (the platform network 10.10.0.0/24)."
  default     = "vmbr1"
}

variable "private_cidr" {
  type        = string
  description = "Address of the VM in CIDR notation; the SNI proxy passes Teleport's names to its port 3080."
  default     = "10.10.0.2/24"

  validation {
    condition     = can(cidrhost(var.private_cidr, 0)) && can(regex("^[0-9.]+/[0-9]+$", var.private_cidr))
    error_message = "The private_cidr must be an IPv4 address with prefix length, e.g. \"10.10.0.2/24\"."
  }
}

variable "private_gateway" {
  type        = string
  description = "Default gateway (the Proxmox host's NAT address on the private network)."
  default     = "10.10.0.1"
}

variable "dns_servers" {
  type        = list(string)
  description = "DNS resolvers of the VM (needed to install Teleport and for ACME)."
  default     = ["1.1.1.1", "9.9.9.9"]
}

variable "admin_user" {
  type        = string
  description = "Admin login with the SSH keys and passwordless sudo (password and root logins are disabled)."
  default     = "waddle"
}

variable "ssh_public_keys" {
  type        = list(string)
  description = "OpenSSH public keys of the admin user. At least one."

  validation {
    condition     = length(var.ssh_public_keys) > 0
    error_message = "At least one SSH public key is required: password login is disabled."
  }
}

variable "timeouts" {
  type        = map(string)
  description = "Deadlines of the resource's operations as durations such as `30m` or `1h30m`; keys `create`, `update`, `delete`, each optional; unset keys take the resource's defaults."
  default     = {}

  validation {
    condition     = length(setsubtract(keys(var.timeouts), ["create", "update", "delete"])) == 0
    error_message = "The keys of timeouts are create, update and delete."
  }
}
