//! Records the commit the binary is built from, for `proof-bff --version`, the start-up log line
//! and the `proof_bff_build_info` metric: from `PROOF_BFF_COMMIT` when it is set (a Docker build,
//! whose context has no `.git`), otherwise from git when the package is a git checkout of its own,
//! otherwise "unknown". A build never fails for want of git.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    // Absolute paths: a copy of the sources built into the same target directory (as CI checks
    // the Dockerfile's build stage) shares this script's last run. Its paths are gone once the copy
    // is, so the checkout's next build runs the script again instead of keeping the copy's answer.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("build.rs").display()
    );
    println!("cargo:rerun-if-env-changed=PROOF_BFF_COMMIT");
    let (commit, modified) = match std::env::var("PROOF_BFF_COMMIT") {
        Ok(given) if !given.trim().is_empty() => {
            let given = given.trim().to_ascii_lowercase();
            if is_commit_id(&given) {
                (Some(given), None)
            } else {
                println!(
                    "cargo:warning=PROOF_BFF_COMMIT is not a commit id (7 to 64 hexadecimal digits): the commit is reported as unknown"
                );
                (None, None)
            }
        }
        _ => from_git(&manifest_dir),
    };
    let description = match (&commit, modified) {
        (Some(commit), Some(true)) => format!("commit {commit}, built from a modified tree"),
        (Some(commit), _) => format!("commit {commit}"),
        (None, _) => "commit unknown".to_owned(),
    };
    println!(
        "cargo:rustc-env=PROOF_BFF_BUILD_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rustc-env=PROOF_BFF_BUILD_DESCRIPTION={description}");
}

fn is_commit_id(text: &str) -> bool {
    (7..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `git` in `dir`, its trimmed standard output when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The checked-out commit, and whether tracked files differ from it. Only when the package itself
/// is the top of a git checkout (a main checkout or a worktree, whose `.git` is a file): a copy of
/// the sources inside some other repository must not report that repository's commit.
fn from_git(manifest_dir: &Path) -> (Option<String>, Option<bool>) {
    let Some(top) = git(manifest_dir, &["rev-parse", "--show-toplevel"]) else {
        return (None, None);
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), manifest_dir) {
        return (None, None);
    }
    watch_git_state(manifest_dir);
    let commit = git(manifest_dir, &["rev-parse", "HEAD"]).filter(|id| is_commit_id(id));
    // Untracked files are left out, as `git describe --dirty` does: a build's own output or a
    // scratch file is not a change to the sources.
    let modified = git(
        manifest_dir,
        &["status", "--porcelain", "--untracked-files=no"],
    )
    .map(|changes| !changes.is_empty());
    (commit, modified)
}

/// Runs this script again when HEAD moves (a commit, a checkout, a reset), when the index changes
/// (staging), or when the sources the binary is built from change (an edit makes the tree modified).
fn watch_git_state(manifest_dir: &Path) {
    let mut watched: Vec<PathBuf> = Vec::new();
    let resolve = |path: String| {
        let path = PathBuf::from(path);
        if path.is_absolute() {
            path
        } else {
            manifest_dir.join(path)
        }
    };
    // In a worktree HEAD and the index are in its own git directory, the branches in the common one.
    if let Some(git_dir) = git(manifest_dir, &["rev-parse", "--absolute-git-dir"]).map(resolve) {
        watched.push(git_dir.join("HEAD"));
        watched.push(git_dir.join("index"));
    }
    if let Some(common) = git(manifest_dir, &["rev-parse", "--git-common-dir"]).map(resolve) {
        if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
            watched.push(common.join(branch));
        }
        watched.push(common.join("packed-refs"));
    }
    for source in ["Cargo.toml", "Cargo.lock", "src", "stand-in"] {
        watched.push(manifest_dir.join(source));
    }
    // A path that does not exist would make cargo run the script on every build.
    for path in watched.into_iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
