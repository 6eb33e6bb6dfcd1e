//! Debian's Chromium, driven through chromedriver the way a person (or a screen reader)
//! finds things: by ARIA role and accessible name, as the browser itself computes them
//! (WebDriver's computed role and label), never by an id the page happens to use.
#![allow(dead_code)] // each browser test uses a part

use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct ChromeDriver {
    child: Child,
    port: u16,
}

/// How a browser starts: its window, and the colour scheme the system asks for.
#[derive(Clone, Copy)]
pub struct Window {
    pub width: u32,
    pub height: u32,
    pub dark: bool,
}

pub const DESKTOP: Window = Window {
    width: 1280,
    height: 800,
    dark: false,
};
pub const PHONE: Window = Window {
    width: 360,
    height: 740,
    dark: false,
};

impl ChromeDriver {
    pub async fn start() -> ChromeDriver {
        let port = super::free_port();
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{binary} is required (apt-get install chromium chromium-driver): {e}")
            });
        let up = super::port_open(port, Duration::from_secs(20)).await;
        assert!(up, "chromedriver did not start");
        ChromeDriver { child, port }
    }

    pub async fn browser(&self) -> Browser {
        self.browser_with(DESKTOP).await
    }

    pub async fn browser_with(&self, window: Window) -> Browser {
        // Two TLS back ends are linked (the driver link is plain HTTP anyway): pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = tempfile::tempdir().unwrap().keep();
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--window-size={},{}", window.width, window.height),
            format!("--user-data-dir={}", profile.display()),
        ];
        if window.dark {
            args.push("--force-dark-mode".into());
        }
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
            // A confirm() the test did not expect must fail the test, not pass silently.
            "unhandledPromptBehavior": "ignore",
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session");
        // Headless Chromium keeps its window at least 500 px wide whatever the flag says:
        // the page's width is emulated as a phone's would be.
        let metrics = serde_json::json!({
            "cmd": "Emulation.setDeviceMetricsOverride",
            "params": {"width": window.width, "height": window.height,
                       "deviceScaleFactor": 1, "mobile": window.width < 600}
        });
        let _ = client
            .issue_cmd(Raw {
                path: "goog/cdp/execute".into(),
                post: Some(metrics.to_string()),
            })
            .await;
        Browser { client }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver command fantoccini has no method for.
#[derive(Debug)]
struct Raw {
    path: String,
    post: Option<String>,
}

impl WebDriverCompatibleCommand for Raw {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        match &self.post {
            Some(body) => (http::Method::POST, Some(body.clone())),
            None => (http::Method::GET, None),
        }
    }
}

/// What an accessible name must be.
#[derive(Clone, Copy, Debug)]
pub enum Name<'a> {
    Is(&'a str),
    StartsWith(&'a str),
    Contains(&'a str),
}

impl Name<'_> {
    fn matches(&self, name: &str) -> bool {
        match self {
            Name::Is(n) => name == *n,
            Name::StartsWith(n) => name.starts_with(n),
            Name::Contains(n) => name.contains(n),
        }
    }
}

/// Where elements of a role are looked for first (the browser then confirms the role).
fn candidates(role: &str) -> &'static str {
    match role {
        "button" => "button, [role=button]",
        "link" => "a[href], [role=link]",
        "textbox" => {
            "textarea, input:not([type]), input[type=text], input[type=password], [role=textbox]"
        }
        "searchbox" => "input[type=search], [role=searchbox]",
        "combobox" => "input[list], select, [role=combobox]",
        "navigation" => "nav, [role=navigation]",
        "log" => "[role=log]",
        "article" => "article, [role=article]",
        "img" => "img, [role=img]",
        "dialog" => "dialog, [role=dialog]",
        "option" => "[role=option]",
        "checkbox" => "input[type=checkbox], [role=checkbox]",
        "heading" => "h1, h2, h3, h4, h5, h6, [role=heading]",
        "separator" => "hr, [role=separator]",
        "main" => "main, [role=main]",
        "status" => "[role=status]",
        other => panic!("no candidates listed for role {other}"),
    }
}

#[derive(Clone)]
pub struct Browser {
    pub client: Client,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn raw(&self, path: String, post: Option<Value>) -> Value {
        let post = post.map(|v| v.to_string());
        self.client
            .issue_cmd(Raw { path, post })
            .await
            .unwrap_or(Value::Null)
    }

    /// The role and accessible name the browser computes for an element ("" once it is
    /// gone or hidden).
    pub async fn role_and_name(&self, element: &Element) -> (String, String) {
        let id = element.element_id();
        let role = self.raw(format!("element/{id}/computedrole"), None).await;
        let name = self.raw(format!("element/{id}/computedlabel"), None).await;
        (
            role.as_str().unwrap_or_default().to_string(),
            name.as_str().unwrap_or_default().to_string(),
        )
    }

    /// Every element of `role` whose name matches, in document order, under `within`
    /// (the whole page when None), displayed or not.
    pub async fn all(&self, within: Option<&Element>, role: &str, name: Name<'_>) -> Vec<Element> {
        let css = Locator::Css(candidates(role));
        let found = match within {
            Some(scope) => scope.find_all(css).await,
            None => self.client.find_all(css).await,
        };
        let mut out = Vec::new();
        for element in found.unwrap_or_default() {
            let (r, n) = self.role_and_name(&element).await;
            // Chromium names the img role by ARIA 1.3's synonym.
            let r = if r == "image" { "img".to_string() } else { r };
            if r == role && name.matches(&n) {
                out.push(element);
            }
        }
        out
    }

    /// The first displayed element of `role` named so, waiting up to 20 s for it (the
    /// page counts unread messages of other rooms every 10 s).
    pub async fn find(&self, role: &str, name: Name<'_>) -> Element {
        self.find_in(None, role, name).await
    }

    pub async fn find_in(&self, within: Option<&Element>, role: &str, name: Name<'_>) -> Element {
        for _ in 0..100 {
            for element in self.all(within, role, name).await {
                if element.is_displayed().await.unwrap_or(false) {
                    return element;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let names = self.names(within, role).await;
        let mut seen = Vec::new();
        for element in self
            .client
            .find_all(Locator::Css(candidates(role)))
            .await
            .unwrap_or_default()
        {
            seen.push(self.role_and_name(&element).await);
        }
        panic!("no {role} named {name:?} is shown; the {role}s are {names:?}; candidates {seen:?}");
    }

    /// Whether one of `role` named so shows within `wait`.
    pub async fn shows(&self, role: &str, name: Name<'_>, wait: Duration) -> bool {
        let until = std::time::Instant::now() + wait;
        loop {
            for element in self.all(None, role, name).await {
                if element.is_displayed().await.unwrap_or(false) {
                    return true;
                }
            }
            if std::time::Instant::now() > until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The accessible names of every displayed element of `role`.
    pub async fn names(&self, within: Option<&Element>, role: &str) -> Vec<String> {
        let mut out = Vec::new();
        for element in self.all(within, role, Name::Contains("")).await {
            if element.is_displayed().await.unwrap_or(false) {
                out.push(self.role_and_name(&element).await.1);
            }
        }
        out
    }

    /// Clicks the element of `role` named so. A list drawn again between finding and
    /// clicking (an unread count changed) leaves a stale element: it is found again, as a
    /// person would click what is there now.
    pub async fn click(&self, role: &str, name: Name<'_>) {
        for _ in 0..5 {
            match self.find(role, name).await.click().await {
                Ok(()) => return,
                Err(err) if err.is_stale_element_reference() => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(err) => panic!("clicking the {role} named {name:?}: {err}"),
            }
        }
        panic!("the {role} named {name:?} kept being drawn again under the click");
    }

    /// Types into a text field found by its label (WebDriver key codes work: `\u{E007}`
    /// is Enter).
    pub async fn type_into(&self, role: &str, name: Name<'_>, text: &str) {
        self.find(role, name).await.send_keys(text).await.unwrap();
    }

    /// The message list's articles (the log labelled "Messages").
    pub async fn messages(&self) -> Vec<Element> {
        let log = self.find("log", Name::Is("Messages")).await;
        log.find_all(Locator::Css("article"))
            .await
            .unwrap_or_default()
    }

    /// The text of every message on screen, in order.
    pub async fn message_texts(&self) -> Vec<String> {
        let text: Value = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll('[role=log] article .text, [role=log] article .file'))
                   .map(e => e.closest('article').querySelector('.author').textContent + ': ' + e.textContent)",
                vec![],
            )
            .await
            .unwrap();
        serde_json::from_value(text).unwrap_or_default()
    }

    /// Waits up to 20 s for a message whose text holds `needle`; the article.
    pub async fn message(&self, needle: &str) -> Element {
        for _ in 0..100 {
            for article in self.messages().await {
                if article.text().await.unwrap_or_default().contains(needle) {
                    return article;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let shown = self.message_texts().await;
        panic!("no message holds {needle:?}; the page shows {shown:?}");
    }

    /// Waits up to 20 s until no message holds `needle`.
    pub async fn message_gone(&self, needle: &str) -> bool {
        for _ in 0..100 {
            let texts = self.message_texts().await;
            if !texts.iter().any(|t| t.contains(needle)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// A message's action button ("Reply", "React", "Edit", "Delete", "Copy link"),
    /// shown first the way a touch shows them: a tap on the message.
    pub async fn action(&self, article: &Element, name: &str) -> Element {
        article
            .find(Locator::Css(".avatar, .body"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.find_in(Some(article), "button", Name::Is(name)).await
    }

    /// What the page has written to the console since the last call (each entry's
    /// level and text).
    pub async fn console(&self) -> Vec<String> {
        let log = self
            .raw(
                "se/log".into(),
                Some(serde_json::json!({"type": "browser"})),
            )
            .await;
        log.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| format!("{} {}", e["level"], e["message"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// axe-core's findings of impact "serious" or "critical" on the page as it stands.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let axe = std::fs::read_to_string("node_modules/axe-core/axe.min.js")
            .expect("axe-core is installed by npm ci (package.json)");
        self.client.execute(&axe, vec![]).await.unwrap();
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(r => done(
                   r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
                          v.nodes.map(n => n.target.join(' ')).join(', '))));",
                vec![],
            )
            .await
            .unwrap();
        serde_json::from_value(found).unwrap_or_default()
    }

    /// Saves what the browser shows as a PNG.
    pub async fn screenshot(&self, path: &str) {
        let png = self.client.screenshot().await.unwrap();
        if let Some(dir) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Whether the page is on its socket (not polling) within 10 s.
    pub async fn goes_live(&self) -> bool {
        super::eventually(Duration::from_secs(10), || async {
            self.js("return window.ferrochat && window.ferrochat.mode")
                .await
                == "websocket"
        })
        .await
    }

    /// Presses keys on whatever has the focus.
    pub async fn keys(&self, keys: &str) {
        let active = self.client.active_element().await.unwrap();
        active.send_keys(keys).await.unwrap();
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Console entries that are not the page's fault: none are expected, so this only names
/// Chromium's own noise about a missing GPU in a headless run.
pub fn page_errors(entries: Vec<String>) -> Vec<String> {
    entries
        .into_iter()
        .filter(|e| !e.contains("GPU stall") && !e.contains("WebGL"))
        .collect()
}
