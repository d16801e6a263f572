//! The commands the guest agent can exec: one argv (no shell), coreutils `install`, and
//! `sh -c` scripts.

use std::path::Path;

use super::{DebianAppliance, Service, Unit};
use crate::pve::guest::ExecOutcome;
use crate::pve::shell::{self, Join};

impl DebianAppliance {
    /// Run one command (no shell).
    pub(super) fn run_argv(&self, argv: &[String]) -> ExecOutcome {
        let Some(cmd0) = argv.first() else {
            return ExecOutcome::fail(1, "empty command\n");
        };
        let cmd = cmd0.rsplit('/').next().unwrap_or(cmd0).to_string();
        let args = &argv[1..];
        if let Some(r) = self.teleport.exec(self, &cmd, args) {
            return r;
        }
        match cmd.as_str() {
            "install" => self.install_cmd(args),
            "sh" | "bash" | "dash" => {
                if args.first().map(String::as_str) == Some("-c") {
                    match args.get(1) {
                        Some(script) => self.run_script(script),
                        None => ExecOutcome::fail(
                            2,
                            format!("{cmd}: -c: option requires an argument\n"),
                        ),
                    }
                } else {
                    ExecOutcome::fail(
                        2,
                        format!("{cmd}: only -c SCRIPT is supported by the emulated guest\n"),
                    )
                }
            }
            "true" => ExecOutcome::ok(""),
            "false" => ExecOutcome::fail(1, ""),
            "echo" => ExecOutcome::ok(format!("{}\n", args.join(" "))),
            "hostname" => ExecOutcome::ok(format!(
                "{}\n",
                self.hostname().unwrap_or_else(|| "debian".into())
            )),
            "haproxy" => {
                if args.iter().any(|a| a == "-v" || a == "-vv") {
                    let Some(bin) = &self.haproxy else {
                        return ExecOutcome::fail(127, "haproxy: command not found\n");
                    };
                    return match std::process::Command::new(bin).arg("-v").output() {
                        Ok(o) => ExecOutcome {
                            exitcode: o.status.code().unwrap_or(1),
                            stdout: String::from_utf8_lossy(&o.stdout).into(),
                            stderr: String::from_utf8_lossy(&o.stderr).into(),
                        },
                        Err(e) => ExecOutcome::fail(126, format!("{e}\n")),
                    };
                }
                if !self.lock().packages.contains("haproxy") {
                    return ExecOutcome::fail(127, "sh: 1: haproxy: not found\n");
                }
                if !args.iter().any(|a| a == "-c") {
                    return ExecOutcome::fail(
                        1,
                        "only `haproxy -c -f FILE...` is supported in the emulated guest\n",
                    );
                }
                let mut files = Vec::new();
                let mut it = args.iter();
                while let Some(a) = it.next() {
                    if a == "-f" {
                        if let Some(f) = it.next() {
                            files.push(f.clone());
                        }
                    }
                }
                self.haproxy_check(&files)
            }
            "systemctl" => self.systemctl(args),
            "cat" => {
                let mut out = Vec::new();
                for f in args {
                    match self
                        .host_path(f)
                        .and_then(|p| std::fs::read(p).map_err(|_| String::new()))
                    {
                        Ok(d) => out.extend(d),
                        Err(_) => {
                            return ExecOutcome::fail(
                                1,
                                format!("cat: {f}: No such file or directory\n"),
                            )
                        }
                    }
                }
                ExecOutcome::ok(String::from_utf8_lossy(&out).into_owned())
            }
            "sha256sum" => {
                let mut out = String::new();
                for f in args.iter().filter(|a| !a.starts_with('-')) {
                    match self.hash_file(f) {
                        Some(h) => out.push_str(&format!("{h}  {f}\n")),
                        None => {
                            return ExecOutcome::fail(
                                1,
                                format!("sha256sum: {f}: No such file or directory\n"),
                            )
                        }
                    }
                }
                ExecOutcome::ok(out)
            }
            "test" | "[" => {
                let a: Vec<&str> = args
                    .iter()
                    .map(String::as_str)
                    .filter(|x| *x != "]")
                    .collect();
                let r = match a.as_slice() {
                    [op, f] => {
                        let p = self.host_path(f).ok();
                        match *op {
                            "-f" => p.map(|p| p.is_file()).unwrap_or(false),
                            "-d" => p.map(|p| p.is_dir()).unwrap_or(false),
                            "-e" => p.map(|p| p.exists()).unwrap_or(false),
                            "-s" => p
                                .and_then(|p| std::fs::metadata(p).ok())
                                .map(|m| m.len() > 0)
                                .unwrap_or(false),
                            "-n" => !f.is_empty(),
                            "-z" => f.is_empty(),
                            _ => false,
                        }
                    }
                    [x, "=", y] => x == y,
                    [x, "!=", y] => x != y,
                    _ => false,
                };
                if r {
                    ExecOutcome::ok("")
                } else {
                    ExecOutcome::fail(1, "")
                }
            }
            "mv" | "cp" => {
                let files: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
                let [src, dst] = files.as_slice() else {
                    return ExecOutcome::fail(1, format!("{cmd}: expected SOURCE DEST\n"));
                };
                let (Ok(s), Ok(mut d)) = (self.host_path(src), self.host_path(dst)) else {
                    return ExecOutcome::fail(1, format!("{cmd}: invalid path\n"));
                };
                if d.is_dir() {
                    if let Some(name) = s.file_name() {
                        d = d.join(name);
                    }
                }
                let r = if cmd == "mv" {
                    std::fs::rename(&s, &d)
                } else {
                    std::fs::copy(&s, &d).map(|_| ())
                };
                match r {
                    Ok(()) => {
                        // A rename keeps the file's mode; a copy gets a new file's.
                        let mut inner = self.lock();
                        let mode = if cmd == "mv" {
                            inner.modes.remove(src.as_str())
                        } else {
                            None
                        };
                        match mode {
                            Some(m) => inner.modes.insert(dst.to_string(), m),
                            None => inner.modes.remove(dst.as_str()),
                        };
                        ExecOutcome::ok("")
                    }
                    Err(_) => ExecOutcome::fail(
                        1,
                        format!("{cmd}: cannot stat '{src}': No such file or directory\n"),
                    ),
                }
            }
            "rm" => {
                let force = args.iter().any(|a| a.starts_with('-') && a.contains('f'));
                for f in args.iter().filter(|a| !a.starts_with('-')) {
                    let p = match self.host_path(f) {
                        Ok(p) => p,
                        Err(e) => return ExecOutcome::fail(1, format!("rm: {e}\n")),
                    };
                    let r = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                    if r.is_err() && !force {
                        return ExecOutcome::fail(
                            1,
                            format!("rm: cannot remove '{f}': No such file or directory\n"),
                        );
                    }
                }
                ExecOutcome::ok("")
            }
            "mkdir" => {
                for f in args.iter().filter(|a| !a.starts_with('-')) {
                    if let Err(e) = self
                        .host_path(f)
                        .and_then(|p| std::fs::create_dir_all(p).map_err(|e| e.to_string()))
                    {
                        return ExecOutcome::fail(1, format!("mkdir: {e}\n"));
                    }
                }
                ExecOutcome::ok("")
            }
            "chmod" | "chown" | "touch" => {
                for f in args.iter().skip(1).filter(|a| !a.starts_with('-')) {
                    let Ok(p) = self.host_path(f) else { continue };
                    if cmd == "touch" {
                        if !p.exists() {
                            let _ = self.write_file(f, b"", false);
                        }
                    } else if !p.exists() {
                        return ExecOutcome::fail(
                            1,
                            format!("{cmd}: cannot access '{f}': No such file or directory\n"),
                        );
                    }
                }
                ExecOutcome::ok("")
            }
            "ls" => {
                let mut out = String::new();
                for f in args.iter().filter(|a| !a.starts_with('-')) {
                    match self.host_path(f).map(std::fs::read_dir) {
                        Ok(Ok(rd)) => {
                            let mut names: Vec<String> = rd
                                .filter_map(|e| e.ok())
                                .map(|e| e.file_name().to_string_lossy().to_string())
                                .collect();
                            names.sort();
                            for n in names {
                                out.push_str(&n);
                                out.push('\n');
                            }
                        }
                        _ => {
                            if self.host_path(f).map(|p| p.is_file()).unwrap_or(false) {
                                out.push_str(&format!("{f}\n"));
                            } else {
                                return ExecOutcome::fail(
                                    2,
                                    format!("ls: cannot access '{f}': No such file or directory\n"),
                                );
                            }
                        }
                    }
                }
                ExecOutcome::ok(out)
            }
            "cloud-init" => {
                if args.first().map(String::as_str) == Some("status") {
                    let st = self.cloud_init_status();
                    let code = if st == "done" { 0 } else { 1 };
                    ExecOutcome {
                        exitcode: code,
                        stdout: format!("status: {st}\n"),
                        stderr: String::new(),
                    }
                } else {
                    ExecOutcome::fail(2, "cloud-init: only `status` is emulated\n")
                }
            }
            "apt-get" | "apt" => match args
                .iter()
                .find(|a| !a.starts_with('-'))
                .map(String::as_str)
            {
                Some("update") => self.teleport.apt_update(self),
                Some("install") => {
                    let allow_downgrades = args.iter().any(|a| a == "--allow-downgrades");
                    let mut out = ExecOutcome::ok("");
                    for p in args.iter().skip(1).filter(|a| !a.starts_with('-')) {
                        if p == "teleport" || p.starts_with("teleport=") {
                            let r = self.teleport.apt_install(p, allow_downgrades);
                            if r.exitcode != 0 {
                                return r;
                            }
                            out.stdout.push_str(&r.stdout);
                            self.lock()
                                .services
                                .entry("teleport".into())
                                .or_insert(Service {
                                    enabled: false,
                                    state: Unit::Inactive,
                                });
                        } else if let Err(e) = self.install(p) {
                            return ExecOutcome::fail(100, format!("{e}\n"));
                        }
                    }
                    out
                }
                _ => ExecOutcome::ok(""),
            },
            "dpkg-query" | "dpkg" => {
                let pkg = args.last().cloned().unwrap_or_default();
                if self.lock().packages.contains(&pkg) {
                    ExecOutcome::ok(format!("ii  {pkg}\n"))
                } else {
                    ExecOutcome::fail(1, format!("dpkg-query: no packages found matching {pkg}\n"))
                }
            }
            _ => ExecOutcome::fail(127, format!("sh: 1: {cmd}: not found\n")),
        }
    }

    /// coreutils `install`: `-d [-m MODE] DIR...` or `[-m MODE] [-o U] [-g G] SRC DEST`.
    pub(super) fn install_cmd(&self, args: &[String]) -> ExecOutcome {
        let (mut dirs, mut mode, mut files) = (false, None, Vec::new());
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-d" => dirs = true,
                "-m" => mode = it.next().cloned(),
                "-o" | "-g" => {
                    it.next();
                }
                x if x.starts_with('-') => {
                    return ExecOutcome::fail(1, format!("install: unrecognized option '{x}'\n"))
                }
                x => files.push(x.to_string()),
            }
        }
        if dirs {
            for d in &files {
                if let Err(e) = self
                    .host_path(d)
                    .and_then(|p| std::fs::create_dir_all(p).map_err(|e| e.to_string()))
                {
                    return ExecOutcome::fail(1, format!("install: {e}\n"));
                }
                if let Some(m) = &mode {
                    self.lock().modes.insert(d.clone(), m.clone());
                }
            }
            return ExecOutcome::ok("");
        }
        let [src, dst] = files.as_slice() else {
            return ExecOutcome::fail(1, "install: expected SOURCE DEST\n");
        };
        let data = if src == "/dev/null" {
            Vec::new()
        } else {
            match self
                .host_path(src)
                .and_then(|p| std::fs::read(p).map_err(|e| e.to_string()))
            {
                Ok(d) => d,
                Err(_) => {
                    return ExecOutcome::fail(
                        1,
                        format!("install: cannot stat '{src}': No such file or directory\n"),
                    )
                }
            }
        };
        match self.host_path(dst) {
            Ok(p) if p.parent().is_some_and(Path::is_dir) => {
                if let Err(e) = std::fs::write(&p, data) {
                    return ExecOutcome::fail(1, format!("install: {dst}: {e}\n"));
                }
            }
            _ => {
                return ExecOutcome::fail(
                    1,
                    format!(
                        "install: cannot create regular file '{dst}': No such file or directory\n"
                    ),
                )
            }
        }
        let mut inner = self.lock();
        match mode {
            Some(m) => inner.modes.insert(dst.clone(), m),
            None => inner.modes.insert(dst.clone(), "0755".into()),
        };
        ExecOutcome::ok("")
    }

    pub(super) fn run_script(&self, script: &str) -> ExecOutcome {
        let cmds = match shell::parse(script) {
            Ok(c) => c,
            Err(e) => return ExecOutcome::fail(2, format!("sh: 1: {e}\n")),
        };
        let mut acc = ExecOutcome::ok("");
        let mut last = 0;
        for (join, argv) in cmds {
            let run = match join {
                Join::First | Join::Seq => true,
                Join::And => last == 0,
                Join::Or => last != 0,
            };
            if !run {
                continue;
            }
            let r = self.run_argv(&argv);
            acc.stdout.push_str(&r.stdout);
            acc.stderr.push_str(&r.stderr);
            last = r.exitcode;
        }
        acc.exitcode = last;
        acc
    }
}
