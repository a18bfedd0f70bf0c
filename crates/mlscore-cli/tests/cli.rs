//! The binary's own surface: its help lists the commands, and usage errors exit with 2.

use std::process::Command;

fn mlscore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlscore"))
}

#[test]
fn help_lists_the_commands() {
    let out = mlscore().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["score", "sql", "inspect"] {
        assert!(text.contains(cmd), "{cmd} missing from:\n{text}");
    }
}

#[test]
fn usage_errors_exit_with_2_and_say_what_is_missing() {
    let out = mlscore().args(["score", "--model", "m"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--input") && err.contains("--output"), "{err}");
}

#[test]
fn bad_option_values_are_refused_before_any_work() {
    let out =
        mlscore().args(["score", "-m", "m", "-i", "x", "-o", "y.parquet", "--on-null", "maybe"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown null policy 'maybe'"));
}
