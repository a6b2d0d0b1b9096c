//! A real browser for the page tests: Debian's headless Chromium, driven
//! through its ChromeDriver by the W3C WebDriver protocol (plain JSON over
//! HTTP, so a few calls of `reqwest` suffice). Each [`Browser`] owns its
//! ChromeDriver, its Chromium and a fresh profile; dropping it kills both.
//!
//! Screenshots go to `target/browser-artifacts/<test>/`, kept after the
//! run as the tests' artefacts.

use serde_json::{Value, json};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The browser and driver binaries: `SAFEGUARD_CHROMIUM` and
/// `SAFEGUARD_CHROMEDRIVER`, else Debian's.
fn binary(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

#[derive(Debug)]
pub struct Browser {
    driver: std::process::Child,
    session: String,
    http: reqwest::Client,
    artifacts: PathBuf,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // ChromeDriver and the Chromium it started share a process group.
        let group = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

#[allow(clippy::expect_used, clippy::panic)]
impl Browser {
    /// Starts ChromeDriver and a headless Chromium with a new profile.
    /// `test` names the folder its screenshots go to.
    pub async fn start(test: &str) -> Self {
        let port = crate::free_port();
        let driver = Command::new(binary("SAFEGUARD_CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver (Debian's chromium-driver; ops/test installs it)");
        let profile = tempfile::Builder::new().prefix("sg-chromium-").tempdir().expect("profile directory");
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = match http.get(format!("{root}/status")).send().await {
                Ok(r) => r.json::<Value>().await.ok(),
                Err(_) => None,
            };
            if status.and_then(|v| v["value"]["ready"].as_bool()) == Some(true) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "chromedriver did not become ready in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The flags keep Chromium off this machine's closed network and out of its sandbox (we run as root).
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,1000".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary("SAFEGUARD_CHROMIUM", "/usr/bin/chromium"), "args": args},
        }}});
        let created: Value = http
            .post(format!("{root}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("create a WebDriver session")
            .json()
            .await
            .expect("session answer");
        let id = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}"));
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::workspace_root().join("target"));
        let artifacts = target.join("browser-artifacts").join(test);
        std::fs::create_dir_all(&artifacts).expect("artefacts folder");
        Self { driver, session: format!("{root}/session/{id}"), http, artifacts, _profile: profile }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            request = request.json(&b);
        }
        let answer: Value =
            request.send().await.expect("WebDriver request").json().await.expect("WebDriver answers JSON");
        if answer["value"].get("error").is_some() {
            panic!("WebDriver {path} failed: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answer: Value = self
                .http
                .post(format!("{}/element", self.session))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .expect("WebDriver request")
                .json()
                .await
                .expect("WebDriver answers JSON");
            if let Some(id) = answer["value"][ELEMENT].as_str() {
                return id.to_owned();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no element {css} on {}:\n{}", self.url().await, self.text("body").await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether anything matches `css` now.
    pub async fn has(&self, css: &str) -> bool {
        self.execute("return document.querySelector(arguments[0]) !== null", json!([css])).await == json!(true)
    }

    /// The rendered text of the first element matching `css` ("" if none).
    pub async fn text(&self, css: &str) -> String {
        let v = self.execute(
            "const e = document.querySelector(arguments[0]); return e ? (e.innerText ?? e.textContent) : ''",
            json!([css]),
        );
        v.await.as_str().unwrap_or_default().to_owned()
    }

    /// The rendered texts of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let v = self
            .execute(
                "return [...document.querySelectorAll(arguments[0])].map(e => (e.innerText ?? e.textContent).trim())",
                json!([css]),
            )
            .await;
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    }

    /// Clicks the first element matching `css`, as a person would.
    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    /// Types `text` into the first element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({ "text": text }))).await;
    }

    /// Presses keys (WebDriver key codes, e.g. "\u{E007}" for Enter) on whatever has focus.
    pub async fn press(&self, keys: &str) {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": k.to_string()}));
            actions.push(json!({"type": "keyUp", "value": k.to_string()}));
        }
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.call(reqwest::Method::POST, "/actions", Some(body)).await;
        self.call(reqwest::Method::DELETE, "/actions", None).await;
    }

    /// Waits up to `seconds` for `script` to return true, else fails with `what`.
    pub async fn wait_until(&self, script: &str, args: Value, seconds: u64, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        while self.execute(script, args.clone()).await != json!(true) {
            if tokio::time::Instant::now() > deadline {
                panic!("{what}: not so after {seconds} s on {}:\n{}", self.url().await, self.text("body").await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The WCAG 2.1 A and AA failures axe-core finds on the page as it is
    /// now: rule id, impact, help text and the elements at fault. axe-core
    /// comes from `tests/browser` (`npm ci` there; `ops/test` does it).
    pub async fn accessibility_violations(&self) -> Vec<Value> {
        static AXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let axe = AXE.get_or_init(|| {
            let path = crate::workspace_root().join("tests/browser/node_modules/axe-core/axe.min.js");
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run `npm ci` in tests/browser, as ops/test does)", path.display()))
        });
        self.execute(axe, json!([])).await;
        let script = "const done = arguments[arguments.length - 1];
            axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
              .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                                       nodes: v.nodes.map(n => n.target.join(' ')) }))))
              .catch(e => done([{ id: 'axe-failed', help: String(e) }]));";
        let found =
            self.call(reqwest::Method::POST, "/execute/async", Some(json!({ "script": script, "args": [] }))).await;
        found.as_array().cloned().unwrap_or_default()
    }

    /// Fails the test with every accessibility failure on the page, if any.
    pub async fn assert_accessible(&self, page: &str) {
        let violations = self.accessibility_violations().await;
        assert!(violations.is_empty(), "{page} fails WCAG 2.1 AA checks: {}", Value::Array(violations));
    }

    /// Saves a screenshot of the whole page as `<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        // Fit the window to the page, so the picture holds all of it (and no blank below it).
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": 1280, "height": 600}))).await;
        let height = self.execute("return document.documentElement.scrollHeight", json!([])).await;
        let height = height.as_u64().unwrap_or(1000).clamp(600, 4000);
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": 1280, "height": height + 120}))).await;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a screenshot is base64 PNG");
        let path = self.artifacts.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write the screenshot");
        path
    }
}
