# One apply against a Proxmox API: the local sandbox (waddle-sandbox) in the acceptance suite,
# configured through PROXMOX_VE_ENDPOINT / PROXMOX_VE_API_TOKEN / PROXMOX_VE_CA_CERT /
# PROXMOX_VE_NODE. `terraform test` destroys what it applied at the end.

run "apply_the_default_network" {
  command = apply

  assert {
    condition     = output.bridge == "vmbr1" && output.id == "waddle/vmbr1"
    error_message = "unexpected bridge or id: ${output.bridge} ${output.id}"
  }
  assert {
    condition     = output.prefix_length == 24 && output.gateway == "10.10.0.1" && output.snat
    error_message = "unexpected addressing"
  }
}
