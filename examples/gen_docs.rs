//! Writes the man pages and shell completions of the Debian package, generated from the
//! clap definitions so that they say what the binaries do: `cargo run --example gen_docs
//! -- DIR` makes `DIR/man/*.1` (tpmvsc, one per subcommand, tpmvscmgr) and
//! `DIR/completions/` (bash, zsh, fish). `scripts/package.sh` runs it.

use std::path::{Path, PathBuf};

use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/docs".into()),
    );
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let tpmvsc = tpmvsc::cli::tpmvsc_command();
    write_pages(&tpmvsc, "tpmvsc", &man)?;
    write_page(&tpmvsc::cli::tpmvscmgr_command(), "tpmvscmgr", &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = tpmvsc.clone();
        clap_complete::generate_to(shell, &mut cmd, "tpmvsc", &completions)?;
    }
    println!(
        "man pages in {}, completions in {}",
        man.display(),
        completions.display()
    );
    Ok(())
}

/// The page of `cmd` as `name.1`, then one per subcommand (`name-sub.1`), recursively.
fn write_pages(cmd: &clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    write_page(cmd, name, dir)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_name = format!("{name}-{}", sub.get_name());
        let sub = sub
            .clone()
            .display_name(sub_name.clone())
            .bin_name(sub_name.replace('-', " "));
        write_pages(&sub, &sub_name, dir)?;
    }
    Ok(())
}

fn write_page(cmd: &clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)
}
