# ---------------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------------

variable "domain" {
  type        = string
  description = "Platform domain, e.g. \"waddle.social\". The default routes are built from it: teleport.<domain>, .teleport.<domain> (every subdomain) and proxmox.<domain> to Teleport; *.apps.<domain> to the gateway VIP."

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.domain))
    error_message = "The domain must be a lowercase DNS name with at least two labels and no trailing dot, e.g. \"example.org\"."
  }
}

variable "teleport_backend" {
  type        = string
  description = "Teleport proxy address (\"<ip>:<port>\") that teleport.<domain>, .teleport.<domain> and proxmox.<domain> are passed to."
  default     = "10.10.0.2:3080"
}

variable "teleport_proxy_protocol" {
  type        = bool
  description = "Send a PROXY protocol v2 header to Teleport (enable only if Teleport's proxy_protocol is on)."
  default     = false
}

variable "gateway_backend" {
  type        = string
  description = "Kubernetes gateway VIP (\"<ip>:<port>\") that *.apps.<domain> is passed to."
  default     = "10.10.0.30:443"
}

variable "http_backend" {
  type        = string
  description = "Plain TCP forward target for port 80 (\"<ip>:<port>\"), the gateway VIP by default; null renders no port-80 listener."
  default     = "10.10.0.30:80"
}

variable "extra_routes" {
  type = list(object({
    hostnames      = list(string)
    backend        = string
    proxy_protocol = bool
    check          = bool
  }))
  description = "Routes appended to the default routes. hostnames: exact names or \"*.suffix\" / \".suffix\" wildcards (any subdomain, never the suffix itself); backend: \"<ip>:<port>\" or \"[<ipv6>]:<port>\"; proxy_protocol: send PROXY v2; check: L4 health check."
  default     = []
}

variable "routes" {
  type = list(object({
    hostnames      = list(string)
    backend        = string
    proxy_protocol = bool
    check          = bool
  }))
  description = "Full route list replacing the defaults and extra_routes; null (the default) uses the routes built from domain. Same element shape as extra_routes."
  default     = null
}

variable "https_port" {
  type        = number
  description = "TLS (SNI passthrough) listen port."
  default     = 443

  validation {
    condition     = var.https_port >= 1 && var.https_port <= 65535 && floor(var.https_port) == var.https_port
    error_message = "The https_port must be an integer in 1..65535."
  }
}

variable "http_port" {
  type        = number
  description = "Plain TCP listen port forwarded to http_backend."
  default     = 80

  validation {
    condition     = var.http_port >= 1 && var.http_port <= 65535 && floor(var.http_port) == var.http_port
    error_message = "The http_port must be an integer in 1..65535."
  }
}

variable "maxconn" {
  type        = number
  description = "HAProxy process and frontend connection limit."
  default     = 4096
}

variable "proxy_timeouts" {
  type = object({
    connect = string
    client  = string
    server  = string
    tunnel  = string
    inspect = string
  })
  description = "HAProxy timeouts (number + ms|s|m|h|d): connect to a backend, client/server inactivity before the tunnel is up, tunnel inactivity for established connections, and how long to wait for a complete TLS ClientHello."
  default = {
    connect = "5s"
    client  = "1m"
    server  = "1m"
    tunnel  = "1h"
    inspect = "5s"
  }
}

# ---------------------------------------------------------------------------------------------
# VM placement
# ---------------------------------------------------------------------------------------------

variable "name" {
  type        = string
  description = "VM name and hostname."
  default     = "sni-proxy"
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
  default     = 1
}

variable "memory" {
  type        = number
  description = "Memory in MiB."
  default     = 512
}

variable "disk_size" {
  type        = number
  description = "Root disk size in GiB."
  default     = 8
}

# ---------------------------------------------------------------------------------------------
# Network and access
# ---------------------------------------------------------------------------------------------

variable "public_bridge" {
  type        = string
  description = "Bridge of the public NIC."
  default     = "vmbr0"
}

variable "public_cidr" {
  type        = string
  description = "Public address of the VM in CIDR notation, e.g. \"203.0.113.10/24\"."
}

variable "public_gateway" {
  type        = string
  description = "Default gateway on the public NIC."
}

variable "private_bridge" {
  type        = string
  description = "Bridge of the private NIC (the platform network 10.10.0.0/24)."
  default     = "vmbr1"
}

variable "private_cidr" {
  type        = string
  description = "Private address of the VM in CIDR notation."
  default     = "10.10.0.3/24"
}

variable "dns_servers" {
  type        = list(string)
  description = "DNS resolvers of the VM (needed to install packages)."
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
  description = "Deadlines of the resource's operations as durations such as `30m` or `1h30m`; keys `create`, `update`, `delete`, each optional. Defaults: create: 15m (includes waiting for HAProxy to run on the VM), update: 15m, delete: 10m."
  default     = {}

  validation {
    condition     = length(setsubtract(keys(var.timeouts), ["create", "update", "delete"])) == 0
    error_message = "The keys of timeouts are create, update and delete."
  }
}
