//! The bytes between a TPM client and the swtpm: a recording relay and parsers for the
//! commands and responses seen on it.

use std::io::{Read, Write};

/// One TCP connection that went through a [`Relay`], recorded in both directions.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// True for swtpm's control port (P+1), false for the TPM command port.
    pub control: bool,
    /// Every byte the client sent, in order.
    pub to_tpm: Vec<u8>,
    /// Every byte the TPM answered, in order.
    pub from_tpm: Vec<u8>,
}

/// A TCP relay between TPM clients and a swtpm that records every byte: it listens on
/// 127.0.0.1:Q and Q+1 and forwards to the swtpm's command port P and control port P+1
/// (the swtpm TCTI derives the control port from the command port). Each accepted
/// connection is recorded separately, in accept order. The listeners stop on drop.
#[derive(Debug)]
pub struct Relay {
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    swallow: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    /// Starts relaying to the swtpm whose command port is `target`.
    pub fn start(target: u16) -> Relay {
        use std::net::TcpListener;
        // Random candidates below the kernel's ephemeral range (32768 and up), where the
        // port after a free one is rarely taken by a client connection.
        let (data, ctrl) = (0..500)
            .find_map(|_| {
                let mut r = [0u8; 2];
                std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").ok()?, &mut r)
                    .ok()?;
                let q = 20_000 + u16::from_le_bytes(r) % 12_000;
                let a = TcpListener::bind(("127.0.0.1", q)).ok()?;
                let b = TcpListener::bind(("127.0.0.1", q + 1)).ok()?;
                Some((a, b))
            })
            .expect("two free consecutive loopback ports for the relay");
        let port = data.local_addr().expect("relay address").port();
        let relay = Relay {
            port,
            log: Default::default(),
            stop: Default::default(),
            swallow: Default::default(),
        };
        for (listener, to, control) in [(data, target, false), (ctrl, target + 1, true)] {
            let log = relay.log.clone();
            let stop = relay.stop.clone();
            let swallow = relay.swallow.clone();
            std::thread::spawn(move || relay_accept(listener, to, control, log, stop, swallow));
        }
        relay
    }

    /// The next TPM command any open connection sends is swallowed: never forwarded and
    /// never answered, its connection to swtpm closed (so that swtpm serves others) while
    /// the client's side stays open — a response lost for good, with the TPM itself fine.
    pub fn swallow_next_command(&self) {
        self.swallow
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `swtpm:host=127.0.0.1,port=Q`: a TCTI that goes through the relay.
    pub fn tcti(&self) -> String {
        tpmvsc::simulator::tcti_for(self.port)
    }

    /// How many connections were accepted so far.
    pub fn count(&self) -> usize {
        self.log.lock().expect("relay log").len()
    }

    /// A copy of every recorded connection so far.
    pub fn connections(&self) -> Vec<Recorded> {
        self.log.lock().expect("relay log").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake both accept loops so that they see the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port + 1));
    }
}

fn relay_accept(
    listener: std::net::TcpListener,
    to: u16,
    control: bool,
    log: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    swallow: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    for client in listener.incoming() {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
            // Nothing listens behind the relay: the client sees a closed connection.
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let index = {
            let mut l = log.lock().expect("relay log");
            l.push(Recorded {
                control,
                ..Recorded::default()
            });
            l.len() - 1
        };
        let (c2, s2) = (
            client.try_clone().expect("cloning the client socket"),
            server.try_clone().expect("cloning the server socket"),
        );
        let (up, down) = (log.clone(), log.clone());
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The answer pump only learns that its connection was swallowed (never asks).
        let up_swallow = (!control).then(|| (swallow.clone(), frozen.clone()));
        let down_swallow = (!control).then(|| (Default::default(), frozen));
        std::thread::spawn(move || relay_pump(client, server, index, true, up, up_swallow));
        std::thread::spawn(move || relay_pump(s2, c2, index, false, down, down_swallow));
    }
}

/// Copies `from` → `to`, recording each chunk before it is forwarded, so that whatever a
/// client has seen answered is already in the log.
type Swallow = (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

fn relay_pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    index: usize,
    upstream: bool,
    log: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    swallow: Option<Swallow>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((wanted, frozen)) = &swallow
            && (frozen.load(SeqCst) || wanted.swap(false, SeqCst))
        {
            // Swallowed: swtpm's side goes (its answer pump ends without closing the
            // client), the client's side stays open and silent until the client closes.
            if !frozen.swap(true, SeqCst) {
                let _ = to.shutdown(std::net::Shutdown::Both);
            }
            continue;
        }
        {
            let mut l = log.lock().expect("relay log");
            let r = &mut l[index];
            if upstream {
                r.to_tpm.extend_from_slice(&buf[..n]);
            } else {
                r.from_tpm.extend_from_slice(&buf[..n]);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if swallow
        .as_ref()
        .is_some_and(|(_, frozen)| frozen.load(SeqCst))
    {
        return;
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// TPM_CC_StartAuthSession.
pub const CC_START_AUTH_SESSION: u32 = 0x0000_0176;
/// TPM_RH_NULL.
pub const TPM_RH_NULL: u32 = 0x4000_0007;

/// One TPM command as sent on the wire.
#[derive(Debug, Clone)]
pub struct WireCommand {
    pub tag: u16,
    pub code: u32,
    /// The whole command, header included.
    pub bytes: Vec<u8>,
}

/// Splits a client→TPM byte stream into TPM commands (tag u16, commandSize u32,
/// commandCode u32, big-endian). Panics on anything that is not a well-formed sequence
/// of commands, so a test cannot pass by misreading the stream.
pub fn split_commands(stream: &[u8]) -> Vec<WireCommand> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        assert!(
            rest.len() >= 10,
            "a truncated TPM command header on the wire: {:02x?}",
            rest
        );
        let tag = u16::from_be_bytes([rest[0], rest[1]]);
        assert!(
            tag == 0x8001 || tag == 0x8002,
            "not a TPM command tag on the wire: {tag:#06x} (stream position {})",
            stream.len() - rest.len()
        );
        let size = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]) as usize;
        assert!(
            size >= 10 && size <= rest.len(),
            "TPM command size {size} does not fit the {} bytes left",
            rest.len()
        );
        let code = u32::from_be_bytes([rest[6], rest[7], rest[8], rest[9]]);
        out.push(WireCommand {
            tag,
            code,
            bytes: rest[..size].to_vec(),
        });
        rest = &rest[size..];
    }
    out
}

/// The fields of a TPM2_StartAuthSession command that say who can read its secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAuthSession {
    /// tpmKey: the key the salt is encrypted to, or TPM_RH_NULL (no salt).
    pub tpm_key: u32,
    /// bind: the entity whose authValue is bound in, or TPM_RH_NULL.
    pub bind: u32,
    /// Length of encryptedSalt.
    pub salt_len: usize,
    /// sessionType: 0x00 HMAC, 0x01 policy, 0x03 trial.
    pub session_type: u8,
}

/// Parses a TPM2_StartAuthSession command (as split by [`split_commands`]).
pub fn parse_start_auth_session(c: &WireCommand) -> StartAuthSession {
    assert_eq!(c.code, CC_START_AUTH_SESSION, "not a StartAuthSession");
    let b = &c.bytes;
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
    let tpm_key = u32_at(10);
    let bind = u32_at(14);
    let mut i = 18;
    if c.tag == 0x8002 {
        // An authorization area (audit/encrypt sessions) before the parameters.
        i += 4 + u32_at(18) as usize;
    }
    let nonce = u16_at(i);
    i += 2 + nonce;
    let salt_len = u16_at(i);
    i += 2 + salt_len;
    assert!(i < b.len(), "StartAuthSession too short: {b:02x?}");
    StartAuthSession {
        tpm_key,
        bind,
        salt_len,
        session_type: b[i],
    }
}

/// `needle` as raw bytes and as lowercase and uppercase hex text.
pub fn secret_forms(needle: &[u8]) -> [Vec<u8>; 3] {
    [
        needle.to_vec(),
        hex::encode(needle).into_bytes(),
        hex::encode_upper(needle).into_bytes(),
    ]
}

/// TPM_CC_CreatePrimary.
pub const CC_CREATE_PRIMARY: u32 = 0x0000_0131;
/// TPM_CC_FlushContext.
pub const CC_FLUSH_CONTEXT: u32 = 0x0000_0165;

/// Splits a TPM→client byte stream into responses (tag, responseSize, responseCode).
pub fn split_responses(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 10 {
        let size = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]) as usize;
        if size < 10 || size > rest.len() {
            break;
        }
        out.push(rest[..size].to_vec());
        rest = &rest[size..];
    }
    out
}

/// The inPublic (marshalled TPMT_PUBLIC) of a CreatePrimary command.
pub fn create_primary_in_public(c: &WireCommand) -> Vec<u8> {
    assert_eq!(c.code, CC_CREATE_PRIMARY, "not a CreatePrimary");
    let b = &c.bytes;
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
    // header (10), primaryHandle (4), authorizationSize and area (tag 0x8002).
    let mut i = 14;
    if c.tag == 0x8002 {
        i += 4 + u32_at(14);
    }
    i += 2 + u16_at(i); // inSensitive
    let n = u16_at(i);
    b[i + 2..i + 2 + n].to_vec()
}

/// A StartAuthSession seen on the wire, with what its salt key was made from when it was
/// a primary created earlier on the same recording (and not flushed since).
#[derive(Debug, Clone)]
pub struct SeenSession {
    pub start: StartAuthSession,
    /// inPublic of the CreatePrimary that returned `start.tpm_key`, if one did.
    pub salt_key_template: Option<Vec<u8>>,
}

/// Every StartAuthSession in the recorded connections (command connections only, in
/// order), each with the template of the transient primary it is salted to, if any.
pub fn sessions_started(conns: &[Recorded]) -> Vec<SeenSession> {
    let mut primaries: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut out = Vec::new();
    for c in conns.iter().filter(|c| !c.control) {
        let responses = split_responses(&c.from_tpm);
        for (i, cmd) in split_commands(&c.to_tpm).iter().enumerate() {
            let ok = |r: &Vec<u8>| r.len() >= 10 && r[6..10] == [0, 0, 0, 0];
            match cmd.code {
                CC_CREATE_PRIMARY => {
                    if let Some(r) = responses.get(i).filter(|r| ok(r) && r.len() >= 14) {
                        let h = u32::from_be_bytes([r[10], r[11], r[12], r[13]]);
                        primaries.retain(|(x, _)| *x != h);
                        primaries.push((h, create_primary_in_public(cmd)));
                    }
                }
                CC_FLUSH_CONTEXT if cmd.bytes.len() >= 14 => {
                    let b = &cmd.bytes;
                    let h = u32::from_be_bytes([b[10], b[11], b[12], b[13]]);
                    primaries.retain(|(x, _)| *x != h);
                }
                CC_START_AUTH_SESSION => {
                    let start = parse_start_auth_session(cmd);
                    let salt_key_template = primaries
                        .iter()
                        .find(|(h, _)| *h == start.tpm_key)
                        .map(|(_, t)| t.clone());
                    out.push(SeenSession {
                        start,
                        salt_key_template,
                    });
                }
                _ => {}
            }
        }
    }
    out
}
