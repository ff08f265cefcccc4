//! The sidecar engine: create, list, find, destroy cards, and check a PIN. The CLI, the
//! `tpmvscmgr` front end and the C API are thin layers over these functions.

pub mod access;
pub mod admin;
pub mod enroll;
pub mod format;
pub mod hardening;
pub mod pin;
pub(crate) mod recover;

pub use pin::{change_pin, verify_pin};
pub(crate) use pin::{change_puk, unblock_with_puk};

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use zeroize::Zeroizing;

use crate::card::{
    self, ADMIN_FILE, AdminFile, AdminMode, CARD_FILE, COUNTERS_FILE, CSK_FILE, CardRecord,
    Counters, GUARD_FILE, MAX_CARDS, ObjectFile, PUK_FILE, PinPolicy,
};
use crate::error::{Error, Quoted, Result};
use crate::provision::access::TpmAccess;
use crate::store::{CardDir, NewCard, Store};
use crate::tpm::{self, Tpm, templates};
use admin::AdminKey;

/// A secret typed by a user (PIN, PUK); zeroized when dropped.
pub type Secret = Zeroizing<Vec<u8>>;

/// How the card's admin key is set up.
#[derive(Debug, Clone)]
pub enum AdminKeySpec {
    /// No admin object: the card cannot be unblocked or reformatted by an administrator.
    Random,
    /// An admin key held by the help desk.
    Key(AdminKey),
}

/// Everything `create` needs; secrets already read and checked by the front end.
#[derive(Debug)]
pub struct CreateRequest {
    pub name: String,
    pub pin: Secret,
    pub puk: Option<Secret>,
    pub admin: AdminKeySpec,
    pub pin_policy: PinPolicy,
    pub pin_tries: u32,
    pub puk_tries: u32,
    /// A card ID to use instead of a random one.
    pub card_id: Option<String>,
    /// Format now (`/generate`); otherwise the card stays unformatted until `format`.
    pub format: bool,
}

impl CreateRequest {
    /// A request with the Windows defaults: default PIN, no PUK, no admin key, formatted.
    pub fn new(name: &str) -> CreateRequest {
        CreateRequest {
            name: name.to_string(),
            pin: Zeroizing::new(card::DEFAULT_PIN.as_bytes().to_vec()),
            puk: None,
            admin: AdminKeySpec::Random,
            pin_policy: PinPolicy::default(),
            pin_tries: card::DEFAULT_TRIES,
            puk_tries: card::DEFAULT_TRIES,
            card_id: None,
            format: true,
        }
    }
}

/// What `list` and `info` show of a card (`--json` keys are stable, DESIGN.md §4).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CardSummary {
    pub name: String,
    pub card_id: String,
    pub instance_id: String,
    pub slot_id: u32,
    pub formatted: bool,
    pub pin_tries_left: u32,
    pub pin_tries: u32,
    pub puk_tries_left: u32,
    pub admin_tries_left: u32,
    pub has_puk: bool,
    pub admin: String,
    pub default_admin_key: bool,
    pub admin_challenges_left: usize,
    pub simulated: bool,
    pub pin_policy: String,
    pub min_pin_len: usize,
    pub max_pin_len: usize,
    /// "ready", "unformatted", "blocked", "TPM lockout (about N min)", "TPM cleared:
    /// recreate", or "damaged: …" with the reason.
    pub state: String,
    pub path: String,
    /// Too many wrong administrator responses: the admin key no longer works on this
    /// card (for good).
    pub admin_blocked: bool,
    /// The TPM is in dictionary-attack lockout: about this many minutes until it lets a
    /// PIN be tried again (None: not in lockout, or the TPM was not asked).
    pub tpm_lockout_minutes: Option<u64>,
    /// The TPM was cleared since the card was made: it can never be used again.
    pub tpm_cleared: bool,
    /// The SRK Name the card was made under (to compare with the TPM's).
    #[serde(skip)]
    pub srk_name: Vec<u8>,
}

/// What `list` and `info` learn from the TPM (one GetCapability and the proved SRK Name).
#[derive(Debug, Clone)]
pub(crate) struct TpmView {
    /// Seconds until the dictionary-attack lockout ends, when the TPM is in one.
    pub lockout_secs: Option<u64>,
    /// The TPM's proved SRK Name.
    pub srk_name: Vec<u8>,
    /// Who holds the TPM's lockout authorization.
    pub lockout_state: Option<hardening::LockoutState>,
}

impl TpmView {
    /// Reads the view from the TPM, or `None` when no TPM can be reached (listing needs
    /// none).
    pub(crate) fn read() -> Option<TpmView> {
        let mut t = Tpm::open().ok()?;
        let da = t.da_status().ok()?;
        let lockout_secs = da.in_lockout.then(|| {
            // One failure is forgotten every recovery_time seconds; the lockout ends when
            // the counter is below the limit again.
            let over = u64::from(da.counter.saturating_sub(da.max_tries)) + 1;
            over * u64::from(da.recovery_time.max(1))
        });
        Some(TpmView {
            lockout_secs,
            srk_name: t.proved_srk_name().ok()?,
            lockout_state: hardening::lockout_state(&mut t).ok(),
        })
    }

    /// Marks the TPM's state on a card's summary (a cleared TPM wins over everything but
    /// damage; a lockout over everything but a blocked card).
    pub(crate) fn annotate(&self, c: &mut CardSummary) {
        if c.state.starts_with("damaged") {
            return;
        }
        if !c.srk_name.is_empty() && c.srk_name != self.srk_name {
            c.tpm_cleared = true;
            c.state = "TPM cleared: recreate".into();
            return;
        }
        if let Some(secs) = self.lockout_secs {
            let minutes = secs.div_ceil(60);
            c.tpm_lockout_minutes = Some(minutes);
            if c.state != "blocked" {
                c.state = format!("TPM lockout (about {minutes} min)");
            }
        }
    }
}

/// Creates a card: TPM objects first, then the card directory appears in one rename, so a
/// crash at any point leaves either no card or a complete one (an interrupted create's
/// counter is freed by the next command, `recover`). `progress` hears about each slow
/// step, and warnings (lines starting with "warning:").
pub fn create(
    store: &Store,
    req: CreateRequest,
    progress: &mut dyn FnMut(&str),
) -> Result<CardSummary> {
    let mut card_id = check_request(&req)?;

    let lock = store.lock()?;
    progress("connecting to the TPM");
    let access = access::OwnTpm::new();
    access.run(|_| Ok::<_, Error>(()))?;
    recover::recover_locked(store, &lock, &access)?;
    let existing = scan(store)?;
    if existing.len() >= MAX_CARDS {
        return Err(Error::TooManyCards { max: MAX_CARDS });
    }
    // Names are friendly names, as on Windows: they may repeat (lookups by a repeated
    // name are refused with the instance IDs to use instead).
    if existing.iter().any(|c| c.id.eq_ignore_ascii_case(&card_id)) {
        return Err(Error::Usage(format!(
            "a card with ID {card_id} exists already"
        )));
    }
    let instance = next_instance(store, &existing)?;

    let mut tpm = match access.into_inner() {
        Some(t) => t,
        None => Tpm::open()?,
    };
    let simulated = tpm.info()?.simulated;
    tell_tpm_state(&mut tpm, req.pin_tries, progress)?;
    let srk = tpm.choose_srk()?;
    progress("defining the card's counter in the TPM");
    // The counter's index follows from the card ID; a drawn ID whose index another card
    // of this TPM holds is drawn again (a given one is refused).
    let mut draws = 0;
    let (new, counter) = loop {
        let new = store.begin_card(&lock, &card_id)?;
        match tpm.counter_define(&uuid_bytes(&card_id)) {
            Ok(c) => break (new, c),
            Err(e) => {
                let _ = store.discard(&lock, new.as_card_dir().entry_name());
                draws += 1;
                if !matches!(e, tpm::TpmError::CounterTaken(_))
                    || req.card_id.is_some()
                    || draws > 16
                {
                    return Err(e.into());
                }
                card_id = uuid::Uuid::new_v4().hyphenated().to_string();
            }
        }
    };
    // Written first, so that a create interrupted from here on frees the counter.
    let made = new
        .write(recover::PENDING_COUNTER_FILE, &counter)
        .and_then(|()| make_card_objects(&mut tpm, &req, counter, progress));
    let objects = match made {
        Ok(o) => o,
        Err(e) => {
            let _ = tpm.counter_undefine(counter.index);
            let _ = store.discard(&lock, new.as_card_dir().entry_name());
            return Err(e);
        }
    };
    drop(tpm);

    let record = CardRecord {
        name: req.name.clone(),
        card_id: card_id.clone(),
        instance,
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        formatted: req.format,
        simulated,
        pin_policy: req.pin_policy.clone(),
        pin_tries: req.pin_tries,
        puk_tries: req.puk_tries,
        has_puk: objects.puk.is_some(),
        admin: if objects.admin.is_some() {
            AdminMode::Managed
        } else {
            AdminMode::Random
        },
        default_admin_key: matches!(&req.admin, AdminKeySpec::Key(k) if k.is_default()),
        pin_salt: objects.pin_salt.to_vec(),
        puk_salt: objects.puk_salt.to_vec(),
        srk,
        pin_initialized: true,
        puk_name: objects.puk.as_ref().map(tpm::Blob::name),
        admin_name: objects.admin.as_ref().map(|a| a.blob.name()),
        counter: Some(counter),
    };
    progress("writing the card");
    let dir = write_card(new, &record, objects)?;
    record_instance(store, instance)?;
    drop(lock);
    summarize(&dir, &record)
}

/// Checks what `create` was asked for before anything is touched; the card ID to use.
fn check_request(req: &CreateRequest) -> Result<String> {
    card::check_name(&req.name)?;
    req.pin_policy.check("PIN", &req.pin)?;
    if let Some(puk) = &req.puk {
        PinPolicy::default().check("PUK", puk)?;
    }
    if req.pin_tries == 0 || req.pin_tries > 255 || req.puk_tries == 0 || req.puk_tries > 255 {
        return Err(Error::Usage(
            "retry counts must be between 1 and 255".into(),
        ));
    }
    Ok(match &req.card_id {
        Some(id) => uuid::Uuid::parse_str(id)
            .map_err(|_| Error::Usage(format!("{} is not a card ID (a GUID)", Quoted(id))))?
            .hyphenated()
            .to_string(),
        None => uuid::Uuid::new_v4().hyphenated().to_string(),
    })
}

/// Tells `progress` how the TPM's dictionary-attack protection and lockout authorization
/// stand, with a warning where they undercut the card's PIN tries.
fn tell_tpm_state(tpm: &mut Tpm, pin_tries: u32, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let da = tpm.da_status()?;
    if da.max_tries < pin_tries {
        progress(&format!(
            "warning: the TPM locks out after {} failed authorizations (on all cards together), \
             fewer than this card's {pin_tries} PIN tries",
            da.max_tries
        ));
    }
    let lockout = hardening::lockout_state(tpm)?;
    match lockout.warning() {
        Some(w) => progress(&format!("warning: {w}")),
        None => progress(&format!("TPM: {}", lockout.describe())),
    }
    Ok(())
}

/// Writes a new card's files into its hidden directory and makes it appear (one rename).
fn write_card(new: NewCard, record: &CardRecord, objects: CardObjects) -> Result<CardDir> {
    new.write(
        GUARD_FILE,
        &ObjectFile {
            blob: objects.guard.blob,
        },
    )?;
    new.write(CSK_FILE, &ObjectFile { blob: objects.csk })?;
    if let Some(blob) = objects.puk {
        new.write(PUK_FILE, &ObjectFile { blob })?;
    }
    if let Some(a) = &objects.admin {
        new.write(ADMIN_FILE, a)?;
    }
    new.write(COUNTERS_FILE, &Counters::full(record))?;
    new.write(CARD_FILE, record)?;
    new.remove(recover::PENDING_COUNTER_FILE)?;
    new.commit()
}

/// The TPM objects of a new card.
struct CardObjects {
    pin_salt: Zeroizing<Vec<u8>>,
    puk_salt: Zeroizing<Vec<u8>>,
    puk: Option<tpm::Blob>,
    admin: Option<AdminFile>,
    guard: tpm::Guard,
    csk: tpm::Blob,
}

/// Makes a new card's PUK and admin objects, its guard for `counter` and its card storage
/// key under the guard.
fn make_card_objects(
    tpm: &mut Tpm,
    req: &CreateRequest,
    counter: tpm::NvCounter,
    progress: &mut dyn FnMut(&str),
) -> Result<CardObjects> {
    let pin_salt = random_bytes(32)?;
    let puk_salt = random_bytes(32)?;
    let puk = match &req.puk {
        Some(p) => {
            progress("creating the PUK object");
            let auth = card::pin_auth(&puk_salt, p);
            Some(tpm.create_under_srk(
                templates::sealed_secret()?,
                &auth,
                Some(&random_bytes(16)?),
            )?)
        }
        None => None,
    };
    let admin = match &req.admin {
        AdminKeySpec::Key(key) => {
            progress("creating the admin object and its challenges");
            let mut x = Zeroizing::new([0u8; 32]);
            getrandom::fill(x.as_mut_slice())
                .map_err(|e| Error::Usage(format!("no randomness: {e}")))?;
            let blob = tpm.create_under_srk(
                templates::sealed_secret()?,
                x.as_slice(),
                Some(&random_bytes(16)?),
            )?;
            let tickets = admin::make_tickets(key, &x, admin::TICKETS_PER_BATCH)?;
            Some(AdminFile { blob, tickets })
        }
        AdminKeySpec::Random => None,
    };
    let puk_name = puk.as_ref().map(tpm::Blob::name);
    let admin_name = admin.as_ref().map(|a| a.blob.name());
    let branches = tpm::policy::branches(puk_name.as_deref(), admin_name.as_deref());
    let policy = tpm::policy::auth_policy(&branches);
    progress("creating the card storage key");
    let guard = tpm.create_guard(counter)?;
    let pin_auth = card::pin_auth(&pin_salt, &req.pin);
    let csk = tpm.create_csk(Some(&guard), &policy, &pin_auth)?;
    Ok(CardObjects {
        pin_salt,
        puk_salt,
        puk,
        admin,
        guard,
        csk,
    })
}

/// Where the store remembers the next instance number (Windows counts up and never
/// reuses one).
const INSTANCES_FILE: &str = "instances.json";

#[derive(Debug, Serialize, serde::Deserialize)]
struct Instances {
    next: u32,
}

/// The instance number of a new card: above every number the store ever handed out and
/// every card it holds (the store lock is held).
fn next_instance(store: &Store, existing: &[Scanned]) -> Result<u32> {
    let path = store.root().join(INSTANCES_FILE);
    let recorded = match crate::store::atomic::read_record::<Instances>(&path) {
        Ok(i) => i.next,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let above_existing = existing
        .iter()
        .filter_map(|c| c.record.as_ref().ok().map(|r| r.instance + 1))
        .max()
        .unwrap_or(0);
    Ok(recorded.max(above_existing))
}

/// Records that `instance` was handed out.
fn record_instance(store: &Store, instance: u32) -> Result<()> {
    crate::store::atomic::write_record(
        &store.root().join(INSTANCES_FILE),
        &Instances {
            next: instance.saturating_add(1),
        },
        true,
    )
}

/// The 16 bytes of a card ID (a GUID); seeds the choice of its counter's NV index.
/// The NV index of the counter of the card `card_id` (a GUID; `None` for anything else).
pub(crate) fn counter_index_of(card_id: &str) -> Option<u32> {
    uuid::Uuid::parse_str(card_id)
        .ok()
        .map(|u| tpm::counter_index(u.as_bytes()))
}

pub(crate) fn uuid_bytes(card_id: &str) -> [u8; 16] {
    uuid::Uuid::parse_str(card_id).map_or([0; 16], |u| *u.as_bytes())
}

/// Every card of the store, by instance number; damaged cards are listed as such.
pub fn list(store: &Store) -> Result<Vec<CardSummary>> {
    let mut out: Vec<CardSummary> = scan(store)?
        .into_iter()
        .map(|c| match (&c.dir, &c.record) {
            (Ok(d), Ok(r)) => summarize(d, r).unwrap_or_else(|e| damaged(&c.id, &c.path, &e)),
            (_, Err(e)) => damaged(&c.id, &c.path, e),
            (Err(e), _) => damaged(&c.id, &c.path, e),
        })
        .collect();
    out.sort_by_key(|s| (s.slot_id, s.card_id.clone()));
    Ok(out)
}

/// One card, found by name, card ID or instance ID.
pub fn info(store: &Store, card_ref: &str) -> Result<CardSummary> {
    let (dir, record) = find(store, card_ref)?;
    summarize(&dir, &record)
}

/// Finds a card by name (exactly), card ID or instance ID (the last two in any case).
/// A reference that could mean two cards is refused with both; a card whose record is
/// damaged is named by its file.
pub fn find(store: &Store, card_ref: &str) -> Result<(CardDir, CardRecord)> {
    // The common case (the module, scripts): a card ID, read directly.
    if let Ok(id) = uuid::Uuid::parse_str(card_ref)
        && let Some(dir) = store.card(&id.hyphenated().to_string())
    {
        return match dir.read::<CardRecord>(CARD_FILE) {
            Ok(r) => Ok((dir, r)),
            Err(e) => Err(Error::CardUnusable {
                name: card_ref.to_string(),
                reason: e.to_string(),
            }),
        };
    }
    let cards = scan(store)?;
    let c = resolve(&cards, card_ref)?;
    c.card().map_err(|e| match e {
        Error::CardUnusable { reason, .. } => Error::CardUnusable {
            name: card_ref.to_string(),
            reason,
        },
        other => other,
    })
}

/// The one card of `cards` that `card_ref` names.
fn resolve<'a>(cards: &'a [Scanned], card_ref: &str) -> Result<&'a Scanned> {
    let id = uuid::Uuid::parse_str(card_ref)
        .ok()
        .map(|u| u.hyphenated().to_string());
    let hits: Vec<&Scanned> = cards
        .iter()
        .filter(|c| {
            id.as_deref().is_some_and(|i| c.id == i)
                || c.record.as_ref().is_ok_and(|r| {
                    r.name == card_ref || r.instance_id().eq_ignore_ascii_case(card_ref)
                })
        })
        .collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => {
            if card::looks_like_instance_id(card_ref) && !card_ref.contains('\\') {
                return Err(Error::Usage(format!(
                    "{} looks like an instance ID whose backslashes the shell removed: quote \
                     it, e.g. 'ROOT\\SMARTCARDREADER\\0000'",
                    Quoted(card_ref)
                )));
            }
            let damaged: Vec<String> = cards
                .iter()
                .filter_map(|c| c.record.as_ref().err().map(ToString::to_string))
                .collect();
            if damaged.is_empty() {
                Err(Error::CardNotFound(card_ref.to_string()))
            } else {
                Err(Error::CardNotFoundDamaged {
                    wanted: card_ref.to_string(),
                    damaged,
                })
            }
        }
        many => Err(Error::AmbiguousCard {
            wanted: card_ref.to_string(),
            candidates: many
                .iter()
                .map(|c| match &c.record {
                    Ok(r) => format!("{} (card ID {})", r.instance_id(), r.card_id),
                    Err(_) => format!("card ID {}", c.id),
                })
                .collect(),
        }),
    }
}

/// Destroys a card and revokes every copy of it (DESIGN.md §2): the card's counter in the
/// TPM is incremented (the TPM then refuses its keys, whatever files still exist), the
/// directory disappears in one rename, the counter's NV index is freed and the files are
/// deleted. Works on damaged cards named by card ID too. Unrecoverable.
pub fn destroy(store: &Store, card_ref: &str) -> Result<String> {
    let lock = store.lock()?;
    let tpm = access::OwnTpm::new();
    recover::recover_locked(store, &lock, &tpm)?;
    let cards = scan(store)?;
    let card = resolve(&cards, card_ref)?;
    let label = match &card.record {
        Ok(r) => format!("{} ({})", r.name, r.card_id),
        Err(_) => card.id.clone(),
    };
    let _card_lock = match &card.dir {
        Ok(d) => Some(store.lock_card(d)?),
        Err(_) => None,
    };
    // The counter's index follows from the card ID (the directory's name), not from the
    // record: a damaged or altered record cannot keep copies of the card alive.
    let counter = counter_index_of(&card.id);
    let mut defined = false;
    if let Some(index) = counter {
        match tpm.run(|t| t.counter_increment(index)) {
            Ok(_) => defined = true,
            Err(tpm::TpmError::CounterGone) => {}
            Err(e) => return Err(revoke_failed(&label, e.into())),
        }
    }
    let hidden = store.hide_card(&lock, &card.id)?;
    if let Some(index) = counter.filter(|_| defined) {
        match tpm.run(|t| t.counter_undefine(index)) {
            Ok(()) | Err(tpm::TpmError::CounterGone) => {}
            // Revoked already; the next command frees the index (the files stay hidden).
            Err(_) => return Ok(label),
        }
    }
    store.discard(&lock, &hidden)?;
    Ok(label)
}

fn revoke_failed(label: &str, e: Error) -> Error {
    Error::CardUnusable {
        name: label.to_string(),
        reason: format!(
            "not destroyed: its counter in the TPM could not be incremented, so copies of its \
             files would keep working ({e})"
        ),
    }
}

// ----- helpers -----

/// One entry of the store: the card's directory and record, or why it cannot be used (it
/// is listed as damaged, and can still be destroyed by its ID).
struct Scanned {
    id: String,
    path: std::path::PathBuf,
    dir: Result<CardDir>,
    record: Result<CardRecord>,
}

impl Scanned {
    /// The directory and record of a usable card.
    fn card(&self) -> Result<(CardDir, CardRecord)> {
        match (&self.dir, &self.record) {
            (Ok(d), Ok(r)) => Ok((d.clone(), r.clone())),
            (Err(e), _) | (_, Err(e)) => Err(Error::CardUnusable {
                name: self.id.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

fn scan(store: &Store) -> Result<Vec<Scanned>> {
    Ok(store
        .cards()?
        .into_iter()
        .map(|e| {
            let record = match &e.dir {
                Ok(d) => d.read::<CardRecord>(CARD_FILE).and_then(|r| {
                    // The directory's name is the card ID everything else derives from
                    // (its counter's index among them); a record claiming another was
                    // moved or altered.
                    if r.card_id.eq_ignore_ascii_case(&e.id) {
                        Ok(r)
                    } else {
                        Err(Error::corrupt(
                            d.file(CARD_FILE),
                            format!(
                                "it names card ID {}, but it lies in the directory of card {}",
                                r.card_id, e.id
                            ),
                        ))
                    }
                }),
                Err(err) => Err(Error::corrupt(&e.path, err.to_string())),
            };
            Scanned {
                id: e.id,
                path: e.path,
                dir: e.dir,
                record,
            }
        })
        .collect())
}

pub(crate) fn summarize(dir: &CardDir, r: &CardRecord) -> Result<CardSummary> {
    let counters: Counters = dir.read(COUNTERS_FILE)?;
    let challenges = if dir.has(ADMIN_FILE) {
        dir.read::<AdminFile>(ADMIN_FILE)?.tickets.len()
    } else {
        0
    };
    // Parse every TPM object file, so a damaged one shows in `list` and `info`.
    dir.read::<ObjectFile>(CSK_FILE)?;
    if r.has_puk {
        dir.read::<ObjectFile>(PUK_FILE)?;
    }
    let state = if counters.pin_tries_left == 0 {
        "blocked"
    } else if !r.formatted {
        "unformatted"
    } else {
        "ready"
    };
    Ok(CardSummary {
        name: r.name.clone(),
        card_id: r.card_id.clone(),
        instance_id: r.instance_id(),
        slot_id: r.instance,
        formatted: r.formatted,
        pin_tries_left: counters.pin_tries_left,
        pin_tries: r.pin_tries,
        puk_tries_left: counters.puk_tries_left,
        admin_tries_left: counters.admin_tries_left,
        has_puk: r.has_puk,
        admin: match r.admin {
            AdminMode::Managed => "managed".into(),
            AdminMode::Random => "random".into(),
        },
        default_admin_key: r.default_admin_key,
        admin_challenges_left: challenges,
        simulated: r.simulated,
        pin_policy: r.pin_policy.describe(),
        min_pin_len: r.pin_policy.min_len,
        max_pin_len: r.pin_policy.max_len,
        state: state.into(),
        path: dir.path().display().to_string(),
        admin_blocked: r.admin == AdminMode::Managed && counters.admin_tries_left == 0,
        tpm_lockout_minutes: None,
        tpm_cleared: false,
        srk_name: r.srk.name.clone(),
    })
}

fn damaged(id: &str, path: &std::path::Path, e: &Error) -> CardSummary {
    CardSummary {
        name: String::new(),
        card_id: id.to_string(),
        instance_id: String::new(),
        slot_id: u32::MAX,
        formatted: false,
        pin_tries_left: 0,
        pin_tries: 0,
        puk_tries_left: 0,
        admin_tries_left: 0,
        has_puk: false,
        admin: String::new(),
        default_admin_key: false,
        admin_challenges_left: 0,
        simulated: false,
        pin_policy: String::new(),
        min_pin_len: 0,
        max_pin_len: 0,
        state: format!("damaged: {e}"),
        path: path.display().to_string(),
        admin_blocked: false,
        tpm_lockout_minutes: None,
        tpm_cleared: false,
        srk_name: Vec::new(),
    }
}

pub(crate) fn random_bytes(n: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut v = Zeroizing::new(vec![0u8; n]);
    getrandom::fill(&mut v).map_err(|e| Error::Usage(format!("no randomness from the OS: {e}")))?;
    Ok(v)
}
