# Plan-only cases with a mocked provider (no Proxmox needed): the module's inputs reach the
# resource as the platform wires them, and every variable validation refuses bad input.
# `terraform test` (Terraform >= 1.7, OpenTofu >= 1.8); run by
# acceptance-tests/tests/cli_module_tests.rs.

mock_provider "waddle" {}

variables {
  domain               = "waddle.example"
  acme_email           = "admin@waddle.example"
  github_org           = "waddle-social"
  github_client_id     = "Iv1.0123456789abcdef"
  github_client_secret = "not-a-real-secret"
  ssh_public_keys      = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleExampleKeyReplaceMeReplaceMe00 admin"]
}

run "defaults_follow_the_platform_layout" {
  command = plan

  assert {
    condition = (
      waddle_teleport_node.this.private_nic.cidr == "10.10.0.2/24" &&
      waddle_teleport_node.this.private_nic.gateway == "10.10.0.1" &&
      waddle_teleport_node.this.private_nic.bridge == "vmbr1"
    )
    error_message = "Teleport sits at 10.10.0.2 on vmbr1, gateway 10.10.0.1"
  }
  assert {
    condition     = waddle_teleport_node.this.cores == 2 && waddle_teleport_node.this.memory == 2048 && waddle_teleport_node.this.disk_size == 20
    error_message = "2 vCPU, 2 GiB, 20 GiB"
  }
  assert {
    condition     = waddle_teleport_node.this.proxmox_ui_uri == "https://10.10.0.1:8006"
    error_message = "the Proxmox UI app points at the host's private address"
  }
  assert {
    condition     = waddle_teleport_node.this.proxy_protocol == false && waddle_teleport_node.this.sni_routes == null
    error_message = "no PROXY protocol and no route check by default"
  }
  assert {
    condition     = output.proxy_backend == "10.10.0.2:3080"
    error_message = "proxy_backend: ${output.proxy_backend}"
  }
}

run "teams_map_to_roles_in_the_org" {
  command = plan
  variables {
    teams_to_roles = [
      { team = "infra", roles = ["infra-admin"] },
      { team = "devs", roles = ["access"] },
    ]
  }
  assert {
    condition = (
      length(waddle_teleport_node.this.github.teams_to_roles) == 2 &&
      waddle_teleport_node.this.github.teams_to_roles[1].organization == "waddle-social" &&
      waddle_teleport_node.this.github.teams_to_roles[1].team == "devs" &&
      tolist(waddle_teleport_node.this.github.teams_to_roles[1].roles) == tolist(["access"])
    )
    error_message = "every mapping is in github_org"
  }
  assert {
    condition     = waddle_teleport_node.this.github.client_id == "Iv1.0123456789abcdef" && waddle_teleport_node.this.github.connector_name == "github"
    error_message = "client id and connector name"
  }
  assert {
    condition     = contains(keys(waddle_teleport_node.this.roles), "infra-admin")
    error_message = "the default role infra-admin is defined"
  }
}

run "kubeconfig_apps_and_proxy_protocol_reach_the_node" {
  command = plan
  variables {
    kubeconfig     = "apiVersion: v1\nkind: Config\n"
    proxy_protocol = true
    sni_routes = [
      { hostnames = ["teleport.waddle.example", ".teleport.waddle.example", "proxmox.waddle.example"], backend = "10.10.0.2:3080", proxy_protocol = true, check = true },
    ]
    apps = [
      { name = "talos", uri = "tcp://10.10.0.20:50000", public_addr = null, insecure_skip_verify = false, labels = null },
    ]
  }
  assert {
    condition     = waddle_teleport_node.this.kubeconfig == "apiVersion: v1\nkind: Config\n"
    error_message = "kubeconfig is passed on"
  }
  assert {
    condition     = waddle_teleport_node.this.proxy_protocol == true && waddle_teleport_node.this.sni_routes[0].proxy_protocol == true
    error_message = "the PROXY protocol setting and the routes are passed on"
  }
  assert {
    condition     = length(waddle_teleport_node.this.apps) == 1 && waddle_teleport_node.this.apps[0].uri == "tcp://10.10.0.20:50000"
    error_message = "the app list is passed on"
  }
}

run "domain_must_be_a_dns_name" {
  command = plan
  variables {
    domain = "Not A Domain"
  }
  expect_failures = [var.domain]
}

run "github_org_is_a_login" {
  command = plan
  variables {
    github_org = "not an org"
  }
  expect_failures = [var.github_org]
}

run "at_least_one_team_mapping" {
  command = plan
  variables {
    teams_to_roles = []
  }
  expect_failures = [var.teams_to_roles]
}

run "a_mapping_grants_a_role" {
  command = plan
  variables {
    teams_to_roles = [{ team = "infra", roles = [] }]
  }
  expect_failures = [var.teams_to_roles]
}

run "teleport_version_is_a_release" {
  command = plan
  variables {
    teleport_version = "v18.1.0"
  }
  expect_failures = [var.teleport_version]
}

run "private_cidr_has_a_prefix" {
  command = plan
  variables {
    private_cidr = "10.10.0.2"
  }
  expect_failures = [var.private_cidr]
}

run "at_least_one_ssh_key" {
  command = plan
  variables {
    ssh_public_keys = []
  }
  expect_failures = [var.ssh_public_keys]
}

run "timeouts_keys_are_create_update_delete" {
  command = plan
  variables {
    timeouts = { read = "1m" }
  }
  expect_failures = [var.timeouts]
}
