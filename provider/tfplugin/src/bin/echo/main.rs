//! `waddle-tfplugin-echo`: a tiny protocol-6 plugin for tests and benchmarks.

mod provider;

fn main() -> std::process::ExitCode {
    let opts = waddle_tfplugin::ServeOptions::from_env("waddle-tfplugin-echo");
    waddle_tfplugin::serve_main(provider::EchoProvider::default(), opts)
}
