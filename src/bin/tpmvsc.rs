//! `tpmvsc`: create, list, inspect and destroy TPM virtual smart cards, and run the
//! simulator TPM (`tpmvsc::cli`).

fn main() -> std::process::ExitCode {
    tpmvsc::cli::tpmvsc_main()
}
