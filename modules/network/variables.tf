# ---------------------------------------------------------------------------------------------
# SDN objects
# ---------------------------------------------------------------------------------------------

variable "zone" {
  type        = string
  description = "Proxmox SDN zone id (type simple, created by the module): 2-8 letters or digits, a letter first."
  default     = "waddle"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9]{1,7}$", var.zone))
    error_message = "The zone must be 2-8 letters or digits starting with a letter (Proxmox SDN id), e.g. \"waddle\"."
  }
}

variable "vnet" {
  type        = string
  description = "Proxmox SDN vnet id, which is also the bridge name VMs attach to: 2-8 letters or digits, a letter first. The default \"vmbr1\" is the private bridge the other waddle modules expect (modules/haproxy private_bridge, modules/talos-cluster bridge); choose another name if the host already has a Linux bridge vmbr1."
  default     = "vmbr1"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9]{1,7}$", var.vnet))
    error_message = "The vnet must be 2-8 letters or digits starting with a letter (Proxmox SDN id), e.g. \"vmbr1\"."
  }
}

variable "alias" {
  type        = string
  description = "Free-text vnet alias shown in the Proxmox UI (letters, digits, spaces and ()*+,-./:;<=>?@[\\]^_); null (the default) for none."
  default     = null
}

# ---------------------------------------------------------------------------------------------
# Addressing
# ---------------------------------------------------------------------------------------------

variable "cidr" {
  type        = string
  description = "IPv4 subnet of the private network (host bits zero, prefix 1-30). Changing it replaces the network."
  default     = "10.10.0.0/24"

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && can(regex("^[0-9.]+/[0-9]+$", var.cidr))
    error_message = "The cidr must be an IPv4 network in CIDR notation, e.g. \"10.10.0.0/24\"."
  }
}

variable "gateway" {
  type        = string
  description = "Gateway address inside cidr, configured on the bridge of every node (the NAT router of the VMs); null for the first host of cidr."
  default     = "10.10.0.1"

  validation {
    condition     = var.gateway == null || can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", var.gateway))
    error_message = "The gateway must be an IPv4 address, e.g. \"10.10.0.1\"."
  }
}

variable "snat" {
  type        = bool
  description = "Source NAT (masquerade) of traffic leaving the private network through the host's default route."
  default     = true
}

variable "dhcp_range" {
  type = object({
    start = string
    end   = string
  })
  description = "DHCP range served by dnsmasq on the bridge (dnsmasq must be installed on the nodes); null (the default) for no DHCP. The waddle VMs use static addresses."
  default     = null
}

variable "nodes" {
  type        = list(string)
  description = "Proxmox VE nodes the network is deployed on; null (the default) for every node of the cluster."
  default     = null
}

variable "timeouts" {
  type        = map(string)
  description = "Deadlines of the resource's operations as durations such as `30m` or `1h30m`; keys `create`, `update`, `delete`, each optional. Defaults: create, update and delete: 5m each."
  default     = {}

  validation {
    condition     = length(setsubtract(keys(var.timeouts), ["create", "update", "delete"])) == 0
    error_message = "The keys of timeouts are create, update and delete."
  }
}

# ---------------------------------------------------------------------------------------------
# Host firewall (opt-in)
# ---------------------------------------------------------------------------------------------

variable "firewall_enabled" {
  type        = bool
  description = "Manage the Proxmox host firewall (a waddle_host_firewall): cluster firewall on, input policy firewall_policy_in, the private network accepted, the API from operator_api_sources and SSH from operator_ssh_sources. false (the default): the firewall is left alone."
  default     = false
}

variable "firewall_node" {
  type        = string
  description = "Node whose host rules are managed; null (the default) for the provider's node."
  default     = null
}

variable "firewall_policy_in" {
  type        = string
  description = "Input policy of the cluster firewall: DROP (the default), REJECT or ACCEPT."
  default     = "DROP"

  validation {
    condition     = contains(["DROP", "REJECT", "ACCEPT"], var.firewall_policy_in)
    error_message = "The firewall input policy must be DROP, REJECT or ACCEPT."
  }
}

variable "operator_api_sources" {
  type        = list(string)
  description = "IPv4 addresses or networks (e.g. \"203.0.113.7/32\") that may reach the Proxmox API (tcp/8006); they form the IP set operator_ipset_name. Include the address this machine reaches Proxmox from, or the plan is refused as a lock-out."
  default     = []
}

variable "operator_ipset_name" {
  type        = string
  description = "Name of the operators' IP set. Named \"management\", it is Proxmox's own management set (its members also reach SSH and the consoles)."
  default     = "waddle-operators"
}

variable "operator_ssh_sources" {
  type        = list(string)
  description = "IPv4 addresses, networks or ranges that may reach SSH (tcp/22) on the host; [] (the default) for no SSH rule."
  default     = []
}

variable "operator_access_expires" {
  type        = string
  description = "RFC 3339 date-time (e.g. \"2026-02-01T18:00:00Z\") after which the SSH rule is removed by the next plan and apply (time-boxed access); null (the default) for a permanent rule."
  default     = null

  validation {
    condition     = var.operator_access_expires == null || can(formatdate("YYYY", var.operator_access_expires))
    error_message = "The operator access expiry must be an RFC 3339 date-time such as \"2026-02-01T18:00:00Z\"."
  }
}

variable "acknowledge_lockout_risk" {
  type        = bool
  description = "Apply a firewall plan even though, by waddle's reckoning, it would drop the provider's own connection to the Proxmox API. false (the default): such a plan is refused."
  default     = false
}
