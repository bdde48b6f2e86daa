//! The README's two commands, as a newcomer on a fresh clone runs them.

mod common;
use common::*;

use std::path::Path;

/// The shell code blocks of the README section "Two commands".
fn readme_commands() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = text
        .split("## Two commands")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| {
            b.split("```")
                .next()
                .unwrap()
                .replace("\\\n", " ")
                .trim()
                .to_string()
        })
        .collect()
}

/// Copies the files git tracks, as a fresh clone has them.
fn fresh_clone(to: &Path) {
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "not a git checkout");
    for f in out.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let rel = std::str::from_utf8(f).unwrap();
        let src = repo().join(rel);
        if !src.exists() {
            continue; // deleted in the work tree, not yet committed
        }
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
    }
}

#[test]
fn the_quickstart_command_works_on_a_fresh_clone_and_its_next_query_too() {
    let cmds = readme_commands();
    assert_eq!(cmds.len(), 3, "{cmds:?}");
    let run = &cmds[0];
    let args: Vec<&str> = run
        .strip_prefix("cargo run -- ")
        .unwrap_or_else(|| panic!("the first command should build and run: {run}"))
        .split_whitespace()
        .collect();
    let clone = tempfile::tempdir().unwrap();
    fresh_clone(clone.path());
    let out = run_ok(sluice().current_dir(clone.path()).args(&args));
    let text = stdout(&out);
    // The summary names the query to try next; it must work as printed.
    let next = text
        .lines()
        .find_map(|l| l.strip_prefix("next: sluice "))
        .unwrap_or_else(|| panic!("no next query in:\n{text}"));
    let (verb_and_file, sql) = next.split_once(" \"").unwrap();
    let mut q: Vec<String> = verb_and_file
        .split_whitespace()
        .map(str::to_string)
        .collect();
    q.push(sql.trim_end_matches('"').to_string());
    let out = run_ok(
        sluice()
            .current_dir(clone.path())
            .args(&q)
            .args(["--format", "csv"]),
    );
    let n: u64 = stdout(&out).lines().nth(1).unwrap().parse().unwrap();
    let valid = read_lines(&repo().join("topologies/sample/events.ndjson.gz"))
        .iter()
        .filter(|l| classify(l).is_some())
        .count() as u64;
    assert_eq!(n, valid);
    assert!(clone.path().join("lake/1/mp_master_event").is_dir());
}

#[test]
fn ci_runs_the_readmes_test_command() {
    let cmds = readme_commands();
    let test_cmd = cmds.last().unwrap();
    assert_eq!(test_cmd, "scripts/test.sh");
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == format!("exec {test_cmd}")),
        "{ci}"
    );
}
