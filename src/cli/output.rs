//! How the CLIs print: cards as a table or a card's details, JSON, counts in words.

use crate::provision::CardSummary;

/// Writes to standard output for the CLIs. A reader that went away (`tpmvsc list | head`)
/// ends the command quietly with the status a process killed by SIGPIPE has (141), as
/// other Unix tools do; Rust ignores SIGPIPE, and `println!` would panic instead. Any
/// other write error ends it with status 1 and a message.
pub(crate) fn print_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("tpmvsc: writing to standard output: {e}");
        std::process::exit(1);
    }
}

pub(super) fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("tpmvsc: cannot format JSON: {e}"),
    }
}

pub(super) fn admin_text(c: &CardSummary) -> String {
    match (c.admin.as_str(), c.default_admin_key, c.admin_blocked) {
        ("managed", _, true) => "BLOCKED".into(),
        ("managed", true, false) => "DEFAULT KEY".into(),
        ("managed", false, false) => "managed".into(),
        (other, _, _) => other.into(),
    }
}

/// "1 try", "3 tries".
pub(super) fn tries(n: u32) -> String {
    counted(n as usize, "try", "tries")
}

/// "1 challenge", "3 challenges": a count and its noun.
pub(super) fn counted(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

pub(super) fn print_table(cards: &[CardSummary]) {
    // Columns as wide as their widest entry, so long names and states stay aligned.
    let width = |head: &str, f: &dyn Fn(&CardSummary) -> String| {
        cards
            .iter()
            .map(|c| f(c).chars().count())
            .chain(std::iter::once(head.len()))
            .max()
            .unwrap_or(head.len())
    };
    let shown = |c: &CardSummary| !c.state.starts_with("damaged");
    let name_w = width("NAME", &|c| c.name.clone());
    let state_w = width("STATE", &|c| {
        if shown(c) {
            c.state.clone()
        } else {
            String::new()
        }
    });
    println!(
        "{:<5} {:<name_w$} {:<36} {:<27} {:<state_w$} {:<6} {:<4} ADMIN",
        "SLOT", "NAME", "CARD ID", "INSTANCE ID", "STATE", "PIN", "PUK"
    );
    for c in cards {
        if !shown(c) {
            println!("{:<5} {:<name_w$} {:<36} {}", "-", "?", c.card_id, c.state);
            continue;
        }
        println!(
            "{:<5} {:<name_w$} {:<36} {:<27} {:<state_w$} {:<6} {:<4} {}{}",
            c.slot_id,
            c.name,
            c.card_id,
            c.instance_id,
            c.state,
            format!("{}/{}", c.pin_tries_left, c.pin_tries),
            if c.has_puk { "yes" } else { "no" },
            admin_text(c),
            if c.simulated { "  (simulated)" } else { "" }
        );
    }
    if cards.iter().any(|c| c.default_admin_key) {
        println!(
            "DEFAULT KEY: the card uses the well-known admin key; anyone who can read its files can reset its PIN."
        );
    }
    if cards.iter().any(|c| c.admin_blocked) {
        println!(
            "BLOCKED: too many wrong administrator responses; the admin key no longer works on that card (for good: only destroying and recreating the card clears it)."
        );
    }
    if cards.iter().any(|c| c.tpm_cleared) {
        println!(
            "TPM cleared: the TPM was cleared since that card was made; its keys are gone for good. Destroy it and create a new one."
        );
    }
}

pub(super) fn print_info(c: &CardSummary) {
    println!("Name:          {}", c.name);
    println!("Card ID:       {}", c.card_id);
    println!("Instance ID:   {}", c.instance_id);
    println!("Slot:          {}", c.slot_id);
    println!(
        "TPM:           {}",
        if c.simulated {
            "simulated (software token)"
        } else {
            "hardware"
        }
    );
    println!("State:         {}", c.state);
    println!(
        "PIN tries:     {} of {} left",
        c.pin_tries_left, c.pin_tries
    );
    if let Some(m) = c.tpm_lockout_minutes {
        println!(
            "TPM:           in dictionary-attack lockout for about {m} min more (TPM-wide; \
             unblocking the PIN does not clear it; `tpmvsc tpm clear-lockout` does)"
        );
    }
    println!("PIN policy:    {}", c.pin_policy);
    println!(
        "PUK:           {}",
        if c.has_puk {
            format!("yes ({} left)", tries(c.puk_tries_left))
        } else {
            "none".into()
        }
    );
    // The last challenge is kept for `admin refill` and `admin change-key`.
    let usable = c.admin_challenges_left.saturating_sub(1);
    match (c.admin.as_str(), c.default_admin_key) {
        ("managed", _) if c.admin_blocked => println!(
            "Admin key:     BLOCKED after too many wrong responses: it no longer works on this \
             card, for good (only destroying and recreating the card clears it)"
        ),
        ("managed", true) => println!(
            "Admin key:     the well-known DEFAULT key ({} left): anyone who can read the card's files can reset its PIN",
            counted(c.admin_challenges_left, "challenge", "challenges")
        ),
        ("managed", false) => println!(
            "Admin key:     managed ({} left){}",
            counted(c.admin_challenges_left, "challenge", "challenges"),
            if usable <= 5 {
                format!(
                    "; {usable} usable before only the reserve is left: run `tpmvsc admin refill \
                     {}` soon",
                    c.name
                )
            } else {
                String::new()
            }
        ),
        _ => println!(
            "Admin key:     none (random: no administrator can unblock or reformat this card)"
        ),
    }
    println!("Files:         {}", c.path);
}

/// The settings that decide which TPM and which cards this command uses, each with where
/// it came from (environment, a configuration file, the default).
pub(super) fn settings(
    store: &crate::store::Store,
) -> crate::Result<Vec<(&'static str, String, String)>> {
    let c = crate::config::current()?;
    let mut rows = vec![("tcti", c.tcti.value.clone(), c.tcti.source.to_string())];
    rows.push(match &c.store {
        Some(s) => ("store", s.value.display().to_string(), s.source.to_string()),
        None => (
            "store",
            store.root().display().to_string(),
            "default".to_string(),
        ),
    });
    rows.push(match &c.lock_dir {
        Some(s) => (
            "lock_dir",
            s.value.display().to_string(),
            s.source.to_string(),
        ),
        None => (
            "lock_dir",
            crate::tpm::lock_dir().display().to_string(),
            "default".to_string(),
        ),
    });
    rows.push((
        "tpm_wait",
        format!("{} s", c.tpm_wait.value.as_secs_f64()),
        c.tpm_wait.source.to_string(),
    ));
    rows.push((
        "lock_timeout",
        format!("{} s", c.lock_timeout.value.as_secs_f64()),
        c.lock_timeout.source.to_string(),
    ));
    Ok(rows)
}

/// [`settings`] as text lines.
pub(super) fn print_settings(store: &crate::store::Store) -> crate::Result<()> {
    println!("Settings (and where each came from):");
    for (key, value, source) in settings(store)? {
        println!("  {key:<13} {value}  ({source})");
    }
    Ok(())
}

/// [`settings`] as a JSON object: `{"tcti": {"value": ..., "source": ...}, ...}`.
pub(super) fn settings_json(store: &crate::store::Store) -> crate::Result<serde_json::Value> {
    Ok(serde_json::Value::Object(
        settings(store)?
            .into_iter()
            .map(|(k, v, s)| {
                (
                    k.to_string(),
                    serde_json::json!({ "value": v, "source": s }),
                )
            })
            .collect(),
    ))
}
