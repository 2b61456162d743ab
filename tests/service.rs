//! `contrib/rtspd.service`: systemd accepts the unit, it reloads with HUP,
//! runs unprivileged with only the capabilities it needs, and its
//! hardening scores as systemd's own analysis rates "OK" or better.

use std::path::Path;
use std::process::Command;

/// The unit with `ExecStart` pointing at the built binary (systemd checks
/// that the program exists), written to `dir`.
fn unit_in(dir: &Path) -> (std::path::PathBuf, String) {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/rtspd.service"),
    )
    .expect("contrib/rtspd.service");
    let local = unit.replace("/usr/local/bin/rtspd", env!("CARGO_BIN_EXE_rtspd"));
    let path = dir.join("rtspd.service");
    std::fs::write(&path, &local).expect("write unit");
    (path, unit)
}

fn analyze(args: &[&str], unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/test installs it)")
}

#[test]
fn systemd_accepts_the_unit_and_rates_its_hardening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, unit) = unit_in(dir.path());
    let verify = analyze(&["verify"], &path);
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let key = |k: &str| -> Vec<&str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .collect()
    };
    assert_eq!(key("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(key("DynamicUser"), ["yes"]);
    assert!(key("AmbientCapabilities")
        .iter()
        .any(|v| v.split(' ').any(|c| c == "CAP_NET_BIND_SERVICE")));
    assert!(key("ExecStart")
        .iter()
        .all(|v| v.ends_with("serve --config /etc/rtspd/rtspd.toml")));

    let security = analyze(&["security", "--offline=yes", "--no-pager"], &path);
    let out = String::from_utf8_lossy(&security.stdout);
    let level: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for rtspd.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {out}"));
    // systemd's scale: 0 (locked down) to 10 (unprotected); under 4 is
    // "OK", a service with no hardening is about 9.6.
    assert!(level < 3.0, "exposure {level}: {out}");
}
