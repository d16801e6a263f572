# One apply against a Proxmox API: the local sandbox (waddle-sandbox) in the acceptance suite,
# configured through the PROXMOX_VE_* variables. The private network comes from
# modules/network first. `terraform test` destroys both at the end.

variables {
  domain               = "waddle.example"
  acme_email           = "admin@waddle.example"
  github_org           = "waddle-social"
  # the one OAuth app the sandbox's emulated GitHub knows (not a real credential)
  github_client_id     = "Iv1.5a4db0x5andb0x1"
  github_client_secret = "0b5c1e7a2d94f83e6c17b0a9d25e48f16c3a7d90"
  ssh_public_keys      = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleExampleKeyReplaceMeReplaceMe00 admin"]
}

run "network" {
  module {
    source = "../network"
  }
}

run "apply_teleport" {
  command = apply
  variables {
    private_bridge = run.network.bridge
  }

  assert {
    condition     = output.vmid >= 100
    error_message = "no VM id"
  }
  assert {
    condition     = output.web_url == "https://teleport.waddle.example" && output.ip_address == "10.10.0.2"
    error_message = "web_url ${output.web_url}, address ${output.ip_address}"
  }
  assert {
    condition     = output.github_callback_url == "https://teleport.waddle.example/v1/webapi/github/callback"
    error_message = "callback ${output.github_callback_url}"
  }
  assert {
    condition     = strcontains(output.teleport_yaml, "version: v3") && !strcontains(output.teleport_yaml, "0b5c1e7a2d94f83e6c17b0a9d25e48f16c3a7d90")
    error_message = "teleport.yaml is v3 and holds no secret"
  }
}
