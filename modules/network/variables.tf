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
