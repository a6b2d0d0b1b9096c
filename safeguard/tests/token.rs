//! `safeguard token` prints a token once and an entry that authenticates it.

use std::process::Command;

#[test]
fn token_prints_a_working_principal_entry() {
    let out = Command::new(env!("CARGO_BIN_EXE_safeguard"))
        .args([
            "token",
            "--name",
            "haringey-csc",
            "--role",
            "publish",
            "--role",
            "practitioner",
            "--council",
            "E09000014",
        ])
        .output()
        .expect("run safeguard");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let token = text.lines().next().and_then(|l| l.rsplit(' ').next()).expect("the token line");
    assert!(token.starts_with("sg_"));
    let principals = platform::principals::Principals::from_text(&text).expect("a valid principals.toml entry");
    let who = principals.authenticate(token).expect("the token authenticates");
    assert_eq!(who.name.as_str(), "haringey-csc");

    let bad = Command::new(env!("CARGO_BIN_EXE_safeguard"))
        .args(["token", "--name", "x", "--role", "overlord"])
        .output()
        .expect("run safeguard");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("overlord"));
}

#[test]
fn every_subcommand_parses_its_help() {
    // clap checks its own definitions (unique names, valid defaults) when a
    // command is parsed; a mistake there would stop `safeguard serve` dead.
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["token", "--help"],
        &["rebuild", "--help"],
        &["seed", "--help"],
        &["chronology", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_safeguard")).args(args).output().expect("run safeguard");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
