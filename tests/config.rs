//! Config loading: fixtures, shipped files, environment overrides, and `heartwire check`.
//! Every test runs inside figment's Jail, which serialises environment changes.
// figment::Jail closures must return figment::Error, which is large; not our API to change.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::process::Command;

use figment::Jail;
use heartwire::config;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

#[test]
fn valid_fixtures_and_shipped_configs_load() {
    Jail::expect_with(|_| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = fixtures("valid");
        files.push(root.join("config/heartwire.toml"));
        files.push(root.join("config/tornado-demo.toml"));
        for file in files {
            if let Err(e) = config::load(&file) {
                panic!("{}: {e}", file.display());
            }
        }
        Ok(())
    });
}

#[test]
fn every_invalid_fixture_names_its_file_and_key() {
    Jail::expect_with(|_| {
        for file in fixtures("invalid") {
            let text = std::fs::read_to_string(&file).unwrap();
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .expect("first line: # expect: ...");
            let err = match config::load(&file) {
                Ok(_) => panic!("{} loaded", file.display()),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(expect),
                "{}:\n  got: {err}\n  want: {expect}",
                file.display()
            );
            assert!(
                err.contains(&file.display().to_string()),
                "error does not name the file: {err}"
            );
        }
        Ok(())
    });
}

#[test]
fn the_everything_fixture_means_what_it_says() {
    Jail::expect_with(|_| {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/config/valid/everything.toml");
        let c = config::load(&file).unwrap();
        assert_eq!(c.server.listen.len(), 2);
        assert_eq!(c.server.max_frame_size, 512);
        assert_eq!(c.server.outbound_queue_bytes, 65536);
        assert_eq!(c.server.max_http_connections, 16);
        assert!(c.server.proxy_protocol);
        let trusted = &c.server.trusted_proxies;
        for (ip, want) in [
            ("127.0.0.1", true),
            ("10.9.8.7", true),
            ("127.0.0.2", false),
        ] {
            assert_eq!(trusted.contains(ip.parse().unwrap()), want, "{ip}");
        }
        assert_eq!(c.publish.token.as_deref(), Some("secret-from-file"));
        // rate_burst defaults to one second's worth.
        let rate = c.publish.rate.expect("rate_limit = 50");
        assert_eq!((rate.per_second.get(), rate.burst.get()), (50, 50));
        assert!(
            !format!("{:?}", c.publish).contains("secret"),
            "Debug leaks the token"
        );
        let f = c.route("/f").unwrap();
        assert_eq!(f.channels[0].to_string(), "chan:1");
        assert_eq!(
            c.heartbeats["f"].map(|p| p.liveness()),
            Some(heartwire::heartbeat::Liveness::Timeout(
                std::time::Duration::from_millis(300)
            ))
        );
        Ok(())
    });
}

#[test]
fn environment_overrides_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "h.toml",
            "[server]\nlisten = \"127.0.0.1:1\"\n[log]\nlevel = \"info\"\n",
        )?;
        jail.set_env("HEARTWIRE_SERVER__LISTEN", "127.0.0.1:9000");
        jail.set_env("HEARTWIRE_SERVER__MAX_CONNECTIONS", "7");
        jail.set_env("HEARTWIRE_LOG__LEVEL", "debug");
        jail.set_env("HEARTWIRE_SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]");
        // Not a SECTION__KEY name: ignored, not an unknown-key error.
        jail.set_env("HEARTWIRE_CONFIG", "elsewhere.toml");
        let c = config::load(Path::new("h.toml")).unwrap();
        assert_eq!(c.server.listen, vec!["127.0.0.1:9000".parse().unwrap()]);
        assert_eq!(c.server.max_connections, 7);
        assert_eq!(c.log.level, "debug");
        assert!(
            c.server
                .trusted_proxies
                .contains("10.1.1.1".parse().unwrap())
        );
        jail.set_env("HEARTWIRE_SERVER__MAX_CONECTIONS", "7");
        let err = config::load(Path::new("h.toml")).unwrap_err().to_string();
        assert_eq!(
            err,
            "environment variable HEARTWIRE_SERVER__MAX_CONECTIONS: `server.max_conections`: unknown key \
             (did you mean HEARTWIRE_SERVER__MAX_CONNECTIONS?); [server] has: listen, max_connections, \
             max_connections_per_ip, shutdown_grace, handshake_timeout, max_message_size, \
             max_frame_size, outbound_queue, outbound_queue_bytes, max_http_connections, \
             write_timeout, drain_period, reconnect_jitter, trusted_proxies, proxy_protocol, tls"
        );
        Ok(())
    });
    // A value error names the variable too.
    Jail::expect_with(|jail| {
        jail.create_file("h.toml", "")?;
        jail.set_env("HEARTWIRE_SERVER__SHUTDOWN_GRACE", "5");
        let err = config::load(Path::new("h.toml")).unwrap_err().to_string();
        assert!(
            err.starts_with("environment variable HEARTWIRE_SERVER__SHUTDOWN_GRACE: `server.shutdown_grace`: 5 has no unit")
                && err.contains("\"5s\""),
            "{err}"
        );
        Ok(())
    });
    // One underscore: a typo, not somebody else's variable.
    Jail::expect_with(|jail| {
        jail.create_file("h.toml", "")?;
        jail.set_env("HEARTWIRE_SERVER_LISTEN", "127.0.0.1:9000");
        jail.set_env("HEARTWIRE_CONFIG", "elsewhere.toml");
        let err = config::load(Path::new("h.toml")).unwrap_err().to_string();
        assert!(
            err.starts_with("environment variable HEARTWIRE_SERVER_LISTEN: names no config key (did you mean HEARTWIRE_SERVER__LISTEN?)"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        Ok(())
    });
}

#[test]
fn every_validation_problem_is_reported_one_line_each() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config/invalid/many-problems.toml");
    let name = file.display().to_string();
    let want = [
        "`server.listen`: `localhost` is not an IP:port address",
        "`server.max_http_connections`: must be greater than 0",
        "`admin.listen`: `9090` is not an IP:port address",
        "`heartbeat.app.max_missed`: must be at least 1",
        "`route[1].path`: `/ws` is already used",
    ];
    let check = |lines: &[&str]| {
        assert_eq!(lines.len(), want.len(), "{lines:#?}");
        for (line, want) in lines.iter().zip(want) {
            assert!(line.starts_with(&format!("{name}: ")), "{line}");
            assert!(line.contains(want), "got {line}\nwant {want}");
        }
    };
    Jail::expect_with(|_| {
        let err = config::load(&file).unwrap_err().to_string();
        check(&err.lines().collect::<Vec<_>>());
        Ok(())
    });
    let (code, out, err) = heartwire(&["check", "--config", &name]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    check(&err.lines().collect::<Vec<_>>());
}

#[test]
fn log_levels_are_read_as_people_write_them() {
    for (written, level) in [
        ("WARNING", "warn"),
        ("err", "error"),
        ("heartwire=Warning,info", "heartwire=warn,info"),
    ] {
        let c = config::from_toml(
            &format!("[log]\nlevel = \"{written}\"\n"),
            Path::new("l.toml"),
        )
        .unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(c.log.level, level);
    }
}

#[test]
fn print_writes_every_default_and_loads_back_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = fixtures("valid");
    files.push(root.join("config/heartwire.toml"));
    files.push(root.join("config/tornado-demo.toml"));
    Jail::expect_with(|jail| {
        for file in &files {
            let original = config::load(file).unwrap();
            let text = config::effective_toml(file).unwrap();
            assert!(
                !text.contains("a-long-random-secret") && !text.contains("secret-from-file"),
                "--print leaks the token:\n{text}"
            );
            // Saved elsewhere, it still loads to the same config.
            let printed = jail.directory().join("printed.toml");
            std::fs::write(&printed, &text).unwrap();
            let mut again = config::load(&printed)
                .unwrap_or_else(|e| panic!("{}: {e}\n{text}", file.display()));
            again.source.clone_from(&original.source);
            if again.publish.token.as_deref() == Some("<redacted>") {
                again.publish.token.clone_from(&original.publish.token);
            }
            assert_eq!(again, original, "{}:\n{text}", file.display());
        }
        // Defaults that used to be left out.
        let text =
            config::effective_toml(&root.join("tests/fixtures/config/valid/minimal.toml")).unwrap();
        for line in [
            "max_frame_size = 65536",
            "max_body_size = 65536",
            "rate_limit = 0",
            "drain_period = \"10s\"",
            "#   publish.token, publish.token_file: publishing needs no token",
            "#   log.dir: logs go to stderr only",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        let text =
            config::effective_toml(&root.join("tests/fixtures/config/valid/everything.toml"))
                .unwrap();
        for line in [
            "ping_timeout = \"300ms\"",
            "channels = [\"/g\"]",
            "rate_burst = 50",
            "#   route[1].welcome: no welcome message",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        Ok(())
    });
}

#[test]
fn the_shipped_configs_run_side_by_side() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ports = |file: &str| {
        let c = config::from_toml(
            &std::fs::read_to_string(root.join(file)).unwrap(),
            Path::new(file),
        )
        .unwrap();
        let mut addrs = c.server.listen.clone();
        addrs.extend(c.admin.listen);
        addrs
    };
    let (main, demo) = (
        ports("config/heartwire.toml"),
        ports("config/tornado-demo.toml"),
    );
    assert!(main.iter().all(|a| !demo.contains(a)), "{main:?} {demo:?}");
}

#[test]
fn provenance_says_where_a_value_came_from() {
    Jail::expect_with(|jail| {
        jail.create_file("h.toml", "[server]\nlisten = \"127.0.0.1:1\"\n")?;
        let h = Path::new("h.toml");
        assert_eq!(
            config::provenance(h, "admin.listen", "127.0.0.1:9090"),
            "admin.listen (default 127.0.0.1:9090, not set in h.toml)"
        );
        assert_eq!(
            config::provenance(h, "server.listen", "127.0.0.1:1"),
            "server.listen in h.toml"
        );
        jail.set_env("HEARTWIRE_ADMIN__LISTEN", "127.0.0.1:2");
        assert_eq!(
            config::provenance(h, "admin.listen", "127.0.0.1:2"),
            "admin.listen from HEARTWIRE_ADMIN__LISTEN"
        );
        Ok(())
    });
}

/// Runs the daemon on `toml` until it exits (bounded): exit code and stderr.
fn start_until_exit(toml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("heartwire.toml");
    std::fs::write(&config, toml).unwrap();
    let mut child = bin()
        .arg("--config")
        .arg(&config)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = tx.send(text);
    });
    // stderr closes when the process exits.
    let Ok(err) = rx.recv_timeout(std::time::Duration::from_secs(10)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("heartwire did not exit");
    };
    (child.wait().unwrap().code().unwrap_or(-1), err)
}

#[test]
fn a_bind_error_says_where_the_address_came_from_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let base = "[server]\nlisten = \"127.0.0.1:0\"\n";
    let cases = [
        (
            format!("{base}[admin]\nlisten = \"{addr}\"\n"),
            vec![],
            format!("ERROR heartwire: cannot listen on {addr} (admin.listen in "),
        ),
        (
            "[admin]\nenabled = false\n".to_owned(),
            vec![("HEARTWIRE_SERVER__LISTEN", addr.to_string())],
            format!("cannot listen on {addr} (server.listen from HEARTWIRE_SERVER__LISTEN): "),
        ),
        // A level that hides errors: printed all the same.
        (
            format!(
                "[log]\nlevel = \"off\"\n[server]\nlisten = \"{addr}\"\n[admin]\nenabled = false\n"
            ),
            vec![],
            format!("heartwire: cannot listen on {addr} (server.listen in "),
        ),
    ];
    for (toml, env, want) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, err) = start_until_exit(&toml, &env);
        assert_eq!(code, 1, "{err}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("cannot listen"))
            .collect();
        assert_eq!(lines.len(), 1, "printed {} times:\n{err}", lines.len());
        assert!(lines[0].contains(&want), "want `{want}` in:\n{err}");
        assert!(
            lines[0].contains("Address already in use") && lines[0].contains("stop it, or set "),
            "{err}"
        );
    }
    drop(taken);
}

#[test]
fn a_missing_file_is_named() {
    Jail::expect_with(|_| {
        let err = config::load(Path::new("/nonexistent/heartwire.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/heartwire.toml"), "{err}");
        // A config path is read only so far: `/dev/zero` is refused, not read forever.
        let err = config::load(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/dev/zero` is larger than 1048576 bytes"),
            "{err}"
        );
        Ok(())
    });
}

fn heartwire(args: &[&str]) -> (i32, String, String) {
    run(bin().args(args))
}

/// The binary, to run in an empty environment plus what the test sets: Jail tests change
/// this process's environment meanwhile.
fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_heartwire"));
    cmd.env_clear();
    cmd
}

/// Runs `cmd`: exit code, stdout, stderr.
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_what_would_fail_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("logs");
    std::fs::write(&not_a_dir, "").unwrap();
    let config = dir.path().join("heartwire.toml");
    let write = |log_dir: &Path, token_file: &Path| {
        std::fs::write(
            &config,
            format!(
                "[log]\ndir = \"{}\"\n[publish]\ntoken_file = \"{}\"\n",
                log_dir.display(),
                token_file.display()
            ),
        )
        .unwrap();
    };
    let check = || heartwire(&["check", "--config", config.to_str().unwrap()]);

    // A log.dir that is a file, a token_file that is a directory: both named, one line each.
    write(&not_a_dir, dir.path());
    let (code, _, err) = check();
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("`log.dir`: `") && lines[0].contains("/logs` is not a directory"),
        "{err}"
    );
    assert!(
        lines[1].contains("`publish.token_file`: cannot read `")
            && lines[1].contains("Is a directory"),
        "{err}"
    );

    // Permissions, as an unprivileged user: this one, or nobody through setpriv when the
    // tests run as root (root may write anywhere, so it would see nothing to refuse).
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let setpriv = Path::new("/usr/bin/setpriv");
    if root && !setpriv.exists() {
        eprintln!("skipped the permission checks: running as root without /usr/bin/setpriv");
        return;
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "secret").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    write(&ro, &token);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = if root {
        let mut cmd = Command::new(setpriv);
        cmd.env_clear()
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_heartwire"));
        cmd
    } else {
        bin()
    };
    let (code, _, err) = run(cmd.args(["check", "--config", config.to_str().unwrap()]));
    if root && err.starts_with("setpriv:") {
        eprintln!("skipped the permission checks: nobody cannot run the binary here: {err}");
        return;
    }
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("`log.dir`: heartwire cannot create files in `")
            && lines[0].contains("Permission denied"),
        "{err}"
    );
    assert!(
        lines[1].contains("`publish.token_file`: cannot read `")
            && lines[1].contains("Permission denied"),
        "{err}"
    );
    // check wrote nothing.
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
}

#[test]
fn token_file_may_name_a_systemd_credential() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("publish-token"), "s3cret\n").unwrap();
    let config = dir.path().join("heartwire.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"0.0.0.0:8080\"\n[publish]\ntoken_file = \"%credentials%/publish-token\"\n",
    )
    .unwrap();
    let check = || {
        let mut cmd = bin();
        cmd.args(["check", "--config", config.to_str().unwrap()]);
        cmd
    };
    // Under systemd: the credentials directory is in the environment.
    let (code, _, err) = run(check().env("CREDENTIALS_DIRECTORY", &creds));
    assert_eq!(code, 0, "{err}");
    // Outside systemd: the key, the variable and the fix are named.
    let (code, _, err) = run(check().env_remove("CREDENTIALS_DIRECTORY"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "heartwire.toml: `publish.token_file`: uses %credentials% but $CREDENTIALS_DIRECTORY is not set: run under systemd with LoadCredential=publish-token:/etc/heartwire/publish-token, or give a path"
        ),
        "{err}"
    );
    // The credential a fresh install's unit hands over when the source is missing: empty.
    std::fs::write(creds.join("publish-token"), "").unwrap();
    let (code, _, err) = run(check().env("CREDENTIALS_DIRECTORY", &creds));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`publish.token_file`: `%credentials%/publish-token` (")
            && err.contains("is empty: write a long random secret into the source of the unit's LoadCredential=publish-token:..., e.g. /etc/heartwire/publish-token"),
        "{err}"
    );
    Jail::expect_with(|jail| {
        jail.set_env("CREDENTIALS_DIRECTORY", creds.display());
        std::fs::write(creds.join("publish-token"), "from-credential\n").unwrap();
        let c = config::load(&config).unwrap();
        assert_eq!(c.publish.token.as_deref(), Some("from-credential"));
        Ok(())
    });
}

#[test]
fn check_exits_0_on_a_good_file_and_2_with_the_reason_on_a_bad_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let good = dir.join("valid/everything.toml");
    let (code, out, err) = heartwire(&["check", "--config", good.to_str().unwrap(), "--print"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("token = \"<redacted>\"") || !out.contains("secret"),
        "{out}"
    );
    assert!(
        !out.contains("secret-from-file"),
        "--print leaks the token: {out}"
    );
    let bad = dir.join("invalid/unknown-key.toml");
    let (code, _, err) = heartwire(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown-key.toml") && err.contains("server.max_conections"),
        "{err}"
    );
    let (code, out, _) = heartwire(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")));
}
