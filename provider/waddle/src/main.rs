//! `terraform-provider-waddle`: the plugin binary OpenTofu/Terraform launch.
//! Run by hand, it explains that (the handshake in waddle-tfplugin refuses to start
//! without the plugin magic cookie).

fn main() -> std::process::ExitCode {
    // ring is the only rustls crypto back-end linked in; make it the process default before
    // any reqwest client is built (reqwest uses rustls-no-provider and panics without one).
    waddle_proxmox::install_crypto_provider();
    let opts = waddle_tfplugin::ServeOptions::from_env("terraform-provider-waddle");
    let service = waddle_framework::ProviderService::new(waddle_provider::WaddleProvider::new());
    // Shutdown (from the host, SIGTERM, or the host's death) cancels in-flight operations.
    service.stop_on(&opts.shutdown);
    waddle_tfplugin::serve_main(service, opts)
}
