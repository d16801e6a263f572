//! `terraform-provider-waddle`: the plugin binary OpenTofu/Terraform launch.
//! Run by hand, it explains that (the handshake in waddle-tfplugin refuses to start
//! without the plugin magic cookie).

fn main() -> std::process::ExitCode {
    let opts = waddle_tfplugin::ServeOptions::from_env("terraform-provider-waddle");
    let service = waddle_framework::ProviderService::new(waddle_provider::WaddleProvider::new());
    waddle_tfplugin::serve_main(service, opts)
}
