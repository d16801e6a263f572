# One apply against a Proxmox API: the local sandbox (waddle-sandbox) in the acceptance suite,
# configured through the PROXMOX_VE_* variables. The sandbox serves each emulated Talos node
# on its own loopback address, so the node addresses and the VIP are in 127.20.10.0/24 (on a
# real host the defaults give 10.10.0.10-12 and the VIP 10.10.0.20). The private network
# comes from modules/network first; `terraform test` destroys both at the end. The apply takes
# one etcd snapshot (etcd_backup.when = every_apply) into the test's working directory.

run "network" {
  module {
    source = "../network"
  }
}

run "apply_the_cluster" {
  command = apply
  variables {
    bridge                  = run.network.bridge
    control_plane_addresses = ["127.20.10.10", "127.20.10.11", "127.20.10.12"]
    gateway                 = "127.20.10.1"
    vip                     = "127.20.10.20"
    etcd_backup = {
      directory = "etcd-snapshots"
      when      = ["every_apply"]
      keep      = 2
    }
  }

  assert {
    condition     = output.endpoint == "https://127.20.10.20:6443"
    error_message = "endpoint: ${output.endpoint}"
  }
  assert {
    condition     = length(output.node_addresses) == 3 && output.node_addresses["cp2"] == "127.20.10.11"
    error_message = "node addresses: ${jsonencode(output.node_addresses)}"
  }
  assert {
    condition     = strcontains(output.kubeconfig, "https://127.20.10.20:6443") && strcontains(output.talosconfig, "context: waddle")
    error_message = "kubeconfig / talosconfig do not point at the cluster"
  }
  assert {
    condition     = length(output.etcd_snapshots) == 1 && output.etcd_snapshots[0].reason == "every_apply" && length(output.etcd_snapshots[0].sha256) == 64
    error_message = "etcd snapshots: ${jsonencode(output.etcd_snapshots)}"
  }
}
