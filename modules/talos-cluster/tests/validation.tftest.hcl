# Plan-only cases with a mocked provider (no Proxmox needed): the defaults give the original
# three-node layout, and every variable validation refuses bad input. `terraform test`
# (Terraform >= 1.7, OpenTofu >= 1.8); run by acceptance-tests/tests/cli_module_tests.rs.

# The image data source is offline in the real provider, but a mock answers with random strings,
# which the cluster resource's own validation (still run by the real provider) refuses.
mock_provider "waddle" {
  mock_data "waddle_talos_image" {
    defaults = {
      schematic_id    = "88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b"
      installer_image = "factory.talos.dev/installer/88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b:v1.12.11"
      disk_image_url  = "https://factory.talos.dev/image/88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b/v1.12.11/nocloud-amd64.qcow2"
    }
  }
}

run "defaults_are_the_original_layout" {
  command = plan

  assert {
    condition     = length(waddle_talos_cluster.this.nodes) == 3
    error_message = "three control planes by default"
  }
  assert {
    condition     = waddle_talos_cluster.this.nodes["cp1"].address == "10.10.0.10/24" && waddle_talos_cluster.this.nodes["cp3"].address == "10.10.0.12/24"
    error_message = "static addresses .10-.12"
  }
  assert {
    condition     = alltrue([for n in waddle_talos_cluster.this.nodes : n.role == "controlplane"])
    error_message = "no workers by default"
  }
  assert {
    condition     = waddle_talos_cluster.this.nodes["cp1"].proxmox.vmid == 110 && waddle_talos_cluster.this.nodes["cp1"].mac == "bc:24:11:00:00:6e"
    error_message = "vmid/MAC derivation changed"
  }
  assert {
    condition     = output.endpoint == "https://10.10.0.20:6443"
    error_message = "the API goes through the VIP"
  }
}

run "cluster_name_is_validated" {
  command = plan
  variables {
    cluster_name = "Bad_Name"
  }
  expect_failures = [var.cluster_name]
}

run "talos_version_is_validated" {
  command = plan
  variables {
    talos_version = "v1.11.0"
  }
  expect_failures = [var.talos_version]
}

run "config_contract_is_validated" {
  command = plan
  variables {
    config_contract = "v1.14"
  }
  expect_failures = [var.config_contract]
}

run "kubernetes_version_is_validated" {
  command = plan
  variables {
    kubernetes_version = "1.29.0"
  }
  expect_failures = [var.kubernetes_version]
}

run "control_plane_addresses_is_validated" {
  command = plan
  variables {
    control_plane_addresses = ["10.10.0.300"]
  }
  expect_failures = [var.control_plane_addresses]
}

run "prefix_length_is_validated" {
  command = plan
  variables {
    prefix_length = 31
  }
  expect_failures = [var.prefix_length]
}

run "gateway_is_validated" {
  command = plan
  variables {
    gateway = "gw"
  }
  expect_failures = [var.gateway]
}

run "vip_is_validated" {
  command = plan
  variables {
    vip = "10.10.0"
  }
  expect_failures = [var.vip]
}

run "vmid_base_is_validated" {
  command = plan
  variables {
    vmid_base = 99
  }
  expect_failures = [var.vmid_base]
}

run "mac_prefix_is_validated" {
  command = plan
  variables {
    mac_prefix = "BC:24:11"
  }
  expect_failures = [var.mac_prefix]
}

run "cni_is_validated" {
  command = plan
  variables {
    cni = "cilium"
  }
  expect_failures = [var.cni]
}

run "on_destroy_is_validated" {
  command = plan
  variables {
    on_destroy = "later"
  }
  expect_failures = [var.on_destroy]
}

run "timeouts_is_validated" {
  command = plan
  variables {
    timeouts = { read = "1m" }
  }
  expect_failures = [var.timeouts]
}

run "etcd_backup_is_passed_to_the_cluster" {
  command = plan
  variables {
    etcd_backup = {
      directory = "snapshots"
      when      = ["before_upgrade", "every_apply"]
      keep      = 3
    }
  }

  assert {
    condition     = waddle_talos_cluster.this.etcd_backup.directory == "snapshots" && waddle_talos_cluster.this.etcd_backup.keep == 3
    error_message = "etcd_backup not passed: ${jsonencode(waddle_talos_cluster.this.etcd_backup)}"
  }
  assert {
    condition     = contains(waddle_talos_cluster.this.etcd_backup.when, "every_apply")
    error_message = "etcd_backup.when not passed"
  }
}

run "etcd_backup_when_is_validated" {
  command = plan
  variables {
    etcd_backup = {
      directory = "snapshots"
      when      = ["hourly"]
      keep      = null
    }
  }
  expect_failures = [var.etcd_backup]
}

run "etcd_backup_keep_is_validated" {
  command = plan
  variables {
    etcd_backup = {
      directory = "snapshots"
      when      = null
      keep      = 0
    }
  }
  expect_failures = [var.etcd_backup]
}
