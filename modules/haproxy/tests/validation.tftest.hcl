# Plan-only cases with a mocked provider (no Proxmox needed): the default routes follow the
# platform layout, and every variable validation refuses bad input. `terraform test`
# (Terraform >= 1.7, OpenTofu >= 1.8); run by acceptance-tests/tests/cli_module_tests.rs.

mock_provider "waddle" {}

variables {
  domain          = "waddle.example"
  public_cidr     = "203.0.113.10/24"
  public_gateway  = "203.0.113.1"
  ssh_public_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleExampleKeyReplaceMeReplaceMe00 admin"]
}

run "default_routes_follow_the_platform_layout" {
  command = plan

  assert {
    condition     = length(waddle_sni_proxy.this.routes) == 2
    error_message = "two default routes expected"
  }
  assert {
    condition = (
      waddle_sni_proxy.this.routes[0].backend == "10.10.0.2:3080" &&
      contains(waddle_sni_proxy.this.routes[0].hostnames, "teleport.waddle.example") &&
      contains(waddle_sni_proxy.this.routes[0].hostnames, "proxmox.waddle.example")
    )
    error_message = "teleport.* and proxmox.* go to Teleport"
  }
  assert {
    condition     = waddle_sni_proxy.this.routes[1].backend == "10.10.0.30:443" && tolist(waddle_sni_proxy.this.routes[1].hostnames) == tolist(["*.apps.waddle.example"])
    error_message = "*.apps.* goes to the gateway VIP"
  }
  assert {
    condition     = waddle_sni_proxy.this.http_backend == "10.10.0.30:80"
    error_message = "port 80 goes to the gateway VIP"
  }
}

run "teleport_names_follow_the_proxy_protocol_setting" {
  command = plan
  variables {
    teleport_backend        = "10.10.0.2:3080"
    teleport_proxy_protocol = true
  }
  assert {
    condition = (
      waddle_sni_proxy.this.routes[0].proxy_protocol == true &&
      contains(waddle_sni_proxy.this.routes[0].hostnames, "teleport.waddle.example") &&
      contains(waddle_sni_proxy.this.routes[0].hostnames, ".teleport.waddle.example") &&
      contains(waddle_sni_proxy.this.routes[0].hostnames, "proxmox.waddle.example")
    )
    error_message = "teleport.*, every subdomain of teleport.* and proxmox.* go to Teleport with PROXY v2"
  }
  assert {
    condition     = waddle_sni_proxy.this.routes[1].proxy_protocol == false
    error_message = "the gateway route does not get PROXY v2 from the Teleport setting"
  }
  assert {
    condition     = output.routes[0].proxy_protocol == true && output.routes[0].backend == "10.10.0.2:3080"
    error_message = "the routes output (for modules/teleport's sni_routes) shows the Teleport route as rendered"
  }
}

run "extra_routes_are_appended" {
  command = plan
  variables {
    extra_routes = [{ hostnames = ["git.waddle.example"], backend = "10.10.0.40:443", proxy_protocol = false, check = true }]
  }
  assert {
    condition     = length(waddle_sni_proxy.this.routes) == 3 && waddle_sni_proxy.this.routes[2].backend == "10.10.0.40:443"
    error_message = "extra route not appended"
  }
}

run "domain_must_be_a_dns_name" {
  command = plan
  variables {
    domain = "Not A Domain"
  }
  expect_failures = [var.domain]
}

run "https_port_is_a_port" {
  command = plan
  variables {
    https_port = 70000
  }
  expect_failures = [var.https_port]
}

run "http_port_is_a_port" {
  command = plan
  variables {
    http_port = 0
  }
  expect_failures = [var.http_port]
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
