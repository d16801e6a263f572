# One apply against a Proxmox API: the local sandbox (waddle-sandbox) in the acceptance suite,
# configured through the PROXMOX_VE_* variables. The private network comes from
# modules/network first. `terraform test` destroys both at the end.

variables {
  domain          = "waddle.example"
  public_cidr     = "203.0.113.10/24"
  public_gateway  = "203.0.113.1"
  ssh_public_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleExampleKeyReplaceMeReplaceMe00 admin"]
}

run "network" {
  module {
    source = "../network"
  }
}

run "apply_the_proxy" {
  command = apply
  variables {
    private_bridge = run.network.bridge
  }

  assert {
    condition     = output.vmid >= 100
    error_message = "no VM id"
  }
  assert {
    condition     = output.public_address == "203.0.113.10" && output.private_address == "10.10.0.3"
    error_message = "addresses: ${output.public_address} ${output.private_address}"
  }
  assert {
    condition     = strcontains(output.haproxy_cfg, "bind") && length(output.config_hash) > 0
    error_message = "no HAProxy configuration reported"
  }
}
