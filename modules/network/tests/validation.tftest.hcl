# Plan-only cases with a mocked provider (no Proxmox needed): the defaults give the original
# layout, and every variable validation refuses bad input. `terraform test` (Terraform >= 1.7,
# OpenTofu >= 1.8); the acceptance suite runs it (acceptance-tests/tests/cli_module_tests.rs).

mock_provider "waddle" {}

run "defaults_are_the_original_layout" {
  command = plan

  assert {
    condition     = waddle_network.this.zone == "waddle" && waddle_network.this.vnet == "vmbr1"
    error_message = "zone/vnet defaults changed"
  }
  assert {
    condition     = waddle_network.this.cidr == "10.10.0.0/24" && waddle_network.this.gateway == "10.10.0.1"
    error_message = "addressing defaults changed"
  }
  assert {
    condition     = waddle_network.this.snat == true && waddle_network.this.dhcp_range == null
    error_message = "the platform network NATs and has no DHCP"
  }
}

run "timeouts_are_passed_through" {
  command = plan
  variables {
    timeouts = { create = "10m" }
  }
  assert {
    condition     = waddle_network.this.timeouts.create == "10m" && waddle_network.this.timeouts.delete == null
    error_message = "timeouts not passed through"
  }
}

run "zone_must_be_an_sdn_id" {
  command = plan
  variables {
    zone = "1-bad-zone"
  }
  expect_failures = [var.zone]
}

run "vnet_must_be_an_sdn_id" {
  command = plan
  variables {
    vnet = "vmbr_1"
  }
  expect_failures = [var.vnet]
}

run "cidr_must_be_ipv4_cidr" {
  command = plan
  variables {
    cidr = "10.10.0.0"
  }
  expect_failures = [var.cidr]
}

run "gateway_must_be_ipv4" {
  command = plan
  variables {
    gateway = "gw.example"
  }
  expect_failures = [var.gateway]
}

run "timeouts_keys_are_create_update_delete" {
  command = plan
  variables {
    timeouts = { read = "1m" }
  }
  expect_failures = [var.timeouts]
}
