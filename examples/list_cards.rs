//! Lists the cards of the store the way `tpmvsc list --json` does, through the library.
//!
//! Run: `TPMVSC_STORE=target/demo-store cargo run --example list_cards`

fn main() -> Result<(), tpmvsc::Error> {
    let store = tpmvsc::store::Store::open()?;
    for card in tpmvsc::provision::list(&store)? {
        println!(
            "{} {} {} ({}{})",
            card.instance_id,
            card.card_id,
            card.name,
            card.state,
            if card.simulated { ", simulated" } else { "" }
        );
    }
    Ok(())
}
