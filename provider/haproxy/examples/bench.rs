//! Benchmark (prints figures, asserts nothing about time): render + real `haproxy -c` for
//! 10, 100 and 1,000 routes.
//!
//! `cargo run --release -p waddle-haproxy --example bench` (HAProxy binary from
//! `WADDLE_HAPROXY`, default `haproxy`; repetitions from `BENCH_ITERS`, default 5).

use std::path::Path;
use std::time::{Duration, Instant};

use waddle_haproxy::{haproxy_check, render, FilePaths, ProxySpec, RouteSpec};

fn spec(n: usize, dir: &Path) -> ProxySpec {
    let routes = (0..n)
        .map(|i| {
            let host = if i % 2 == 0 {
                format!("svc{i}.example.org")
            } else {
                format!("*.tenant{i}.apps.example.org")
            };
            RouteSpec::new(
                [host],
                &format!("10.10.{}.{}:443", 1 + i / 250, 1 + i % 250),
            )
        })
        .collect();
    ProxySpec {
        routes,
        http_backend: Some("10.10.0.30:80".into()),
        paths: FilePaths::in_dir(dir),
        ..ProxySpec::default()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bin = std::env::var("WADDLE_HAPROXY").unwrap_or_else(|_| "haproxy".to_string());
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let base = std::env::temp_dir().join(format!("waddle-haproxy-bench-{}", std::process::id()));
    println!("routes | render (median) | haproxy -c (median) | cfg bytes | maps bytes");
    println!("-------|-----------------|---------------------|-----------|-----------");
    for n in [10usize, 100, 1000] {
        let dir = base.join(n.to_string());
        std::fs::create_dir_all(&dir)?;
        let s = spec(n, &dir);
        let mut renders = Vec::new();
        let mut checks = Vec::new();
        let mut sizes = (0, 0);
        for _ in 0..iters {
            let t = Instant::now();
            let r = render(&s)?;
            renders.push(t.elapsed());
            r.write_files()?;
            let t = Instant::now();
            haproxy_check(&bin, Path::new(&r.paths.config), Duration::from_secs(120))?;
            checks.push(t.elapsed());
            sizes = (
                r.haproxy_cfg.len(),
                r.exact_map.len() + r.wildcard_map.len(),
            );
        }
        println!(
            "{n:>6} | {:>15.3?} | {:>19.3?} | {:>9} | {:>9}",
            median(renders),
            median(checks),
            sizes.0,
            sizes.1
        );
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
