//! `tpmvscmgr`: Microsoft's `tpmvscmgr.exe` syntax on Linux (`tpmvsc::cli::tpmvscmgr`).

fn main() -> std::process::ExitCode {
    tpmvsc::cli::tpmvscmgr::main()
}
