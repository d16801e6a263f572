locals {
  # The seed layout, plus `.teleport.<domain>` which the seed's table missed (see README).
  default_routes = [
    {
      hostnames      = ["teleport.${var.domain}", ".teleport.${var.domain}", "proxmox.${var.domain}"]
      backend        = var.teleport_backend
      proxy_protocol = var.teleport_proxy_protocol
      check          = true
    },
    {
      hostnames      = ["*.apps.${var.domain}"]
      backend        = var.gateway_backend
      proxy_protocol = false
      check          = true
    },
  ]

  routes = var.routes != null ? var.routes : concat(local.default_routes, var.extra_routes)
}

resource "waddle_sni_proxy" "this" {
  name      = var.name
  node      = var.node
  vmid      = var.vmid
  storage   = var.storage
  cores     = var.cores
  memory    = var.memory
  disk_size = var.disk_size

  image_url     = var.image_url
  image_storage = var.image_storage

  public_nic = {
    bridge  = var.public_bridge
    cidr    = var.public_cidr
    gateway = var.public_gateway
  }
  private_nic = {
    bridge = var.private_bridge
    cidr   = var.private_cidr
  }
  dns_servers = var.dns_servers

  admin_user          = var.admin_user
  ssh_authorized_keys = var.ssh_public_keys

  routes       = local.routes
  http_backend = var.http_backend
  listen = {
    https = var.https_port
    http  = var.http_port
  }
  maxconn        = var.maxconn
  proxy_timeouts = var.proxy_timeouts

  # null when none is set: an imported resource then plans no change.
  timeouts = length(var.timeouts) == 0 ? null : {
    create = lookup(var.timeouts, "create", null)
    update = lookup(var.timeouts, "update", null)
    delete = lookup(var.timeouts, "delete", null)
  }
}
