//! Firefox (Debian `firefox-esr`, headless) with the built module as a security device, on a
//! real swtpm: a fresh profile, the module added through the enterprise policy
//! `SecurityDevices` (`examples/firefox-policies.json`, as root) or with `modutil` on the
//! profile's NSS database (otherwise), and Firefox driven through Marionette (its own
//! remote protocol, no geckodriver):
//! - Firefox itself lists the module and the card's token (nsIPKCS11ModuleDB);
//! - Firefox opens `https://127.0.0.1:P/` of an `openssl s_server -Verify 1` and
//!   authenticates with the card's certificate (chosen automatically,
//!   `security.default_personal_cert`), the PIN typed into Firefox's own PIN dialog;
//! - after Firefox quit, the profile's database has the module with the card's token
//!   (`modutil -list`) and its certificate (`certutil -L -h c`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const FIREFOX: &str = "firefox-esr";

/// Where Debian's firefox-esr reads a machine-wide policy: its `SysConfD` is `/etc/firefox`
/// (not `/etc/firefox-esr`), and this file wins over `distribution/policies.json` of the
/// install. A release build reads no policy file named by environment or by a profile pref
/// (`browser.policies.alternatePath` and `toolkit.policies.perUserDir` only work in
/// automation builds), so the policy route needs root.
const POLICY_DIR: &str = "/etc/firefox/policies";

/// How long Firefox may take to start, load a page or quit.
const FIREFOX_TIMEOUT: Duration = Duration::from_secs(90);

/// A policy file this test wrote; removed (with the directories it created) on drop.
struct PolicyFile {
    file: PathBuf,
    created_dirs: Vec<PathBuf>,
}

impl PolicyFile {
    /// Writes `examples/firefox-policies.json` with the library path replaced by the built
    /// module. None when not root or when the machine already has a policy there (which
    /// this test must not touch).
    fn install() -> Option<PolicyFile> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = Path::new(POLICY_DIR);
        let file = dir.join("policies.json");
        if !root || file.exists() {
            return None;
        }
        let mut created_dirs = Vec::new();
        let mut d = dir.to_path_buf();
        while !d.exists() {
            created_dirs.push(d.clone());
            d = d.parent().expect("policy dir has a parent").to_path_buf();
        }
        std::fs::create_dir_all(dir).expect("creating the Firefox policy dir");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/firefox-policies.json");
        let text = std::fs::read_to_string(&example).expect("examples/firefox-policies.json");
        let mut policy: Value = serde_json::from_str(&text).expect("the example is JSON");
        policy["policies"]["SecurityDevices"]["Add"]["tpmvsc"] =
            json!(module_path().to_str().expect("UTF-8 module path"));
        let guard = PolicyFile { file, created_dirs };
        std::fs::write(
            &guard.file,
            serde_json::to_string_pretty(&policy).expect("JSON"),
        )
        .expect("writing the Firefox policy");
        Some(guard)
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        for d in &self.created_dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A child in its own process group, killed with the group on drop (Firefox's content
/// processes, s_server).
struct Group(Child);

impl Group {
    fn spawn(mut cmd: Command) -> Group {
        use std::os::unix::process::CommandExt;
        let what = format!("{cmd:?}");
        Group(
            cmd.process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {what}: {e}")),
        )
    }

    fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Marionette connection: `len:json` packets, commands `[0, id, name, params]`,
/// answers `[1, id, error, result]`.
struct Marionette {
    stream: TcpStream,
    next_id: u64,
}

impl Marionette {
    /// Connects (retrying while Firefox starts) and reads the server's hello.
    fn connect(port: u16, firefox: &mut Group, log: &Path) -> Marionette {
        let deadline = Instant::now() + FIREFOX_TIMEOUT;
        let stream = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                break s;
            }
            if let Ok(Some(status)) = firefox.0.try_wait() {
                panic!(
                    "Firefox exited ({status}) before Marionette listened:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "Marionette did not listen in {FIREFOX_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        stream
            .set_read_timeout(Some(FIREFOX_TIMEOUT))
            .expect("socket timeout");
        let mut m = Marionette { stream, next_id: 0 };
        let hello = m.read();
        assert_eq!(hello["marionetteProtocol"], 3, "{hello}");
        m
    }

    fn read(&mut self) -> Value {
        let mut len = Vec::new();
        let mut b = [0u8; 1];
        loop {
            self.stream
                .read_exact(&mut b)
                .expect("reading from Marionette");
            if b[0] == b':' {
                break;
            }
            len.push(b[0]);
        }
        let n: usize = String::from_utf8(len)
            .expect("length is text")
            .parse()
            .expect("length is a number");
        let mut body = vec![0u8; n];
        self.stream
            .read_exact(&mut body)
            .expect("reading a Marionette packet");
        serde_json::from_slice(&body).expect("Marionette packets are JSON")
    }

    /// The command's result, or its error object.
    fn try_cmd(&mut self, name: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let body = json!([0, id, name, params]).to_string();
        self.stream
            .write_all(format!("{}:{body}", body.len()).as_bytes())
            .expect("writing to Marionette");
        loop {
            let answer = self.read();
            if answer[0] == 1 && answer[1] == id {
                return if answer[2].is_null() {
                    Ok(answer[3].clone())
                } else {
                    Err(answer[2].clone())
                };
            }
        }
    }

    fn cmd(&mut self, name: &str, params: Value) -> Value {
        self.try_cmd(name, params)
            .unwrap_or_else(|e| panic!("Marionette {name}: {e}"))
    }

    fn script(&mut self, script: &str, args: Value) -> Value {
        self.cmd(
            "WebDriver:ExecuteScript",
            json!({ "script": script, "args": args }),
        )["value"]
            .clone()
    }
}

/// Every module, slot and token Firefox has, as [module name, library, token label].
const LIST_TOKENS: &str = r#"
return (async () => {
  const db = Cc["@mozilla.org/security/pkcs11moduledb;1"].getService(Ci.nsIPKCS11ModuleDB);
  const out = [];
  for (const m of await db.listModules()) {
    for (const s of m.slots) {
      out.push([m.name, m.libName, s.getToken().tokenName]);
    }
  }
  return out;
})();
"#;

/// Answers Firefox's "Please authenticate to the security device (CARD)" dialog with the
/// PIN (Marionette cannot type into a password prompt itself).
const ANSWER_PIN_PROMPT: &str = r#"
const [card, pin] = arguments;
Services.obs.addObserver({
  observe(win) {
    const doc = win.document;
    const text = doc.getElementById("infoBody")?.textContent || "";
    if (!text.includes("(" + card + ")")) return;
    doc.getElementById("password1Textbox").value = pin;
    doc.getElementById("commonDialog").acceptDialog();
  },
}, "common-dialog-loaded");
return true;
"#;

/// Runs `program args` to its end, with the card's environment.
fn run(w: &ClientWorld, program: &str, args: &[&str], what: &str) -> Output {
    let mut c = w.command(program);
    c.args(args);
    let out = run_output(c, CLIENT_TIMEOUT);
    assert_success(&out, what);
    out
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn firefox_lists_the_card_and_logs_in_to_a_tls_server_with_its_certificate() {
    let w = ClientWorld::new();
    if !(require_tool(FIREFOX)
        && require_tool("certutil")
        && require_tool("modutil")
        && require_tool("openssl"))
    {
        return;
    }
    w.keygen("ec-p256", "k");
    let ca_dir = w.dir("ca");
    let (ca, _card_cert) = w.enroll("k", "CN=c firefox,O=Example", &ca_dir);
    let ca_key = ca_dir.join("ca.key");

    // The TLS server: a certificate for 127.0.0.1 from the same CA, and client
    // certificates required and verified against that CA.
    let (server_key, server_csr, server_cert) = (
        ca_dir.join("server.key"),
        ca_dir.join("server.csr"),
        ca_dir.join("server.pem"),
    );
    run(
        &w,
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            path_str(&server_key),
            "-out",
            path_str(&server_csr),
        ],
        "openssl req (server key)",
    );
    run(
        &w,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            path_str(&server_csr),
            "-CA",
            path_str(&ca),
            "-CAkey",
            path_str(&ca_key),
            "-CAcreateserial",
            "-days",
            "1",
            "-copy_extensions",
            "copy",
            "-out",
            path_str(&server_cert),
        ],
        "openssl x509 -req (server certificate)",
    );
    let ports = free_port_pair();
    let (tls_port, marionette_port) = (ports, ports + 1);
    let server_log = ca_dir.join("s_server.log");
    let server_out = std::fs::File::create(&server_log).expect("s_server log");
    let mut s = w.command("openssl");
    s.args([
        "s_server",
        "-accept",
        &format!("127.0.0.1:{tls_port}"),
        "-key",
    ])
    .arg(&server_key)
    .arg("-cert")
    .arg(&server_cert)
    .args(["-Verify", "1", "-verify_return_error", "-www", "-CAfile"])
    .arg(&ca)
    // Both outputs: s_server prints the verified client chain (depth=0 ...) on stderr.
    .stdout(server_out.try_clone().expect("s_server log"))
    .stderr(server_out);
    let _server = Group::spawn(s);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&server_log)
        .unwrap_or_default()
        .contains("ACCEPT")
    {
        assert!(Instant::now() < deadline, "s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A fresh profile: its NSS database trusts the test CA for TLS servers.
    let profile = w.dir("profile");
    let db = format!("sql:{}", profile.display());
    run(
        &w,
        "certutil",
        &["-N", "-d", &db, "--empty-password"],
        "certutil -N",
    );
    run(
        &w,
        "certutil",
        &[
            "-A",
            "-d",
            &db,
            "-n",
            "tpmvsc test CA",
            "-t",
            "C,,",
            "-i",
            path_str(&ca),
        ],
        "certutil -A (the test CA)",
    );
    // The module: through the enterprise policy when this test may write it, otherwise
    // in the profile's database before Firefox starts.
    let policy = PolicyFile::install();
    if policy.is_none() {
        eprintln!("not root or a policy exists already: adding the module with modutil");
        run(
            &w,
            "modutil",
            &[
                "-dbdir",
                &db,
                "-add",
                "tpmvsc",
                "-libfile",
                path_str(&module_path()),
                "-force",
            ],
            "modutil -add",
        );
    }
    std::fs::write(
        profile.join("user.js"),
        format!(
            "user_pref(\"marionette.port\", {marionette_port});\n\
             user_pref(\"security.default_personal_cert\", \"Select Automatically\");\n\
             user_pref(\"browser.shell.checkDefaultBrowser\", false);\n\
             user_pref(\"app.update.disabledForTesting\", true);\n\
             user_pref(\"datareporting.policy.dataSubmissionEnabled\", false);\n"
        ),
    )
    .expect("writing user.js");

    // Firefox, headless, with the module's environment (TPMVSC_STORE, TPMVSC_TCTI,
    // TPMVSC_LOCK_DIR, TSS2_LOG) from ClientWorld::command.
    let home = w.dir("home");
    let ff_log = w.store.scratch("firefox.log");
    let ff_out = std::fs::File::create(&ff_log).expect("firefox log");
    let mut c = w.command(FIREFOX);
    c.args([
        "--headless",
        "--no-remote",
        "--marionette",
        "-remote-allow-system-access",
    ])
    .arg("--profile")
    .arg(&profile)
    .arg("about:blank")
    .env("HOME", &home)
    .env("MOZ_HEADLESS", "1")
    .env("MOZ_CRASHREPORTER_DISABLE", "1")
    .stdout(ff_out.try_clone().expect("firefox log"))
    .stderr(ff_out);
    let mut firefox = Group::spawn(c);
    let mut m = Marionette::connect(marionette_port, &mut firefox, &ff_log);
    // pageLoadStrategy none: Navigate returns at once (the PIN dialog comes mid-load);
    // unhandledPromptBehavior ignore: Marionette leaves that dialog to our observer.
    m.cmd(
        "WebDriver:NewSession",
        json!({ "pageLoadStrategy": "none", "unhandledPromptBehavior": "ignore" }),
    );
    m.cmd("Marionette:SetContext", json!({ "value": "chrome" }));

    // Firefox lists the module and the card's token (token label = card name).
    let tokens = m.script(LIST_TOKENS, json!([]));
    let module = path_str(&module_path()).to_string();
    assert!(
        tokens
            .as_array()
            .expect("an array")
            .iter()
            .any(|t| t[0] == "tpmvsc" && t[1] == module.as_str() && t[2] == "c"),
        "Firefox does not list the tpmvsc module with token c: {tokens}"
    );

    // TLS client authentication with the card's certificate and key.
    m.script(ANSWER_PIN_PROMPT, json!(["c", DEFAULT_PIN]));
    m.cmd("Marionette:SetContext", json!({ "value": "content" }));
    m.cmd(
        "WebDriver:Navigate",
        json!({ "url": format!("https://127.0.0.1:{tls_port}/") }),
    );
    let deadline = Instant::now() + FIREFOX_TIMEOUT;
    let page = loop {
        let text = m
            .try_cmd(
                "WebDriver:ExecuteScript",
                json!({
                    "script": "return document.readyState == 'complete' && document.body \
                               ? document.body.textContent : '';",
                    "args": [],
                }),
            )
            .map(|v| v["value"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        if text.contains("Client certificate") || text.contains("no client certificate") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not load in {FIREFOX_TIMEOUT:?}; last text: {text:?}\n\
             s_server:\n{}\nfirefox:\n{}",
            std::fs::read_to_string(&server_log).unwrap_or_default(),
            std::fs::read_to_string(&ff_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        page.contains("Client certificate")
            && (page.contains("CN=c firefox") || page.contains("CN = c firefox")),
        "the server did not see the card's certificate:\n{page}"
    );
    let log = std::fs::read_to_string(&server_log).expect("s_server log");
    assert!(
        log.contains("depth=0 O = Example, CN = c firefox"),
        "s_server verified no card certificate:\n{log}"
    );

    // Quit; the profile's database then has the module (added by Firefox itself when the
    // policy did it) with the card's token and certificate.
    let _ = m.try_cmd("Marionette:Quit", json!({ "flags": ["eForceQuit"] }));
    if wait_with_deadline(&mut firefox.0, FIREFOX_TIMEOUT).is_none() {
        panic!("Firefox did not quit in {FIREFOX_TIMEOUT:?}");
    }
    firefox.kill(); // its content processes too
    drop(policy);
    let pkcs11_txt = std::fs::read_to_string(profile.join("pkcs11.txt")).expect("pkcs11.txt");
    assert!(
        pkcs11_txt.contains(&format!("library={module}")),
        "the profile does not load the module:\n{pkcs11_txt}"
    );
    let out = run(
        &w,
        "modutil",
        &["-dbdir", &db, "-list", "tpmvsc"],
        "modutil -list",
    );
    assert_output_has(
        &out,
        "Token Name: c ",
        "modutil -list shows the card's token",
    );
    let out = run(
        &w,
        "certutil",
        &["-L", "-d", &db, "-h", "c", "-f", path_str(&w.pin_file)],
        "certutil -L -h c",
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("c:k ") && l.trim_end().ends_with("u,u,u")),
        "certutil -L -h c lists the card's certificate with its key:\n{}",
        out.stdout
    );
}
