//! The chat page in a real browser: Debian's Chromium, driven through chromedriver.

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{binary} is required (apt-get install chromium chromium-driver): {e}")
            });
        let up = port_open(port, Duration::from_secs(20)).await;
        assert!(up, "chromedriver did not start");
        ChromeDriver { child, port }
    }

    async fn browser(&self) -> Client {
        // Two TLS back ends are linked (the driver link is plain HTTP anyway): pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = tempfile::tempdir().unwrap().keep();
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chat_text(browser: &Client) -> String {
    browser
        .find(Locator::Id("chat"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn wait_for_chat(browser: &Client, needle: &str) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = chat_text(browser).await;
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{needle:?} never appeared in the page; it shows {text:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_chats_in_a_real_browser() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    let room = room("browser");

    browser
        .goto(&format!("{}/{room}", server.url))
        .await
        .unwrap();
    let heading = browser
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, format!("Room {room}"));
    let jquery = browser
        .execute("return typeof window.jQuery", vec![])
        .await
        .unwrap();
    assert_eq!(jquery, "function", "jQuery is served by the app itself");
    // A room nobody has written in yet: the page goes live on its socket at once, and no
    // socket of it is refused.
    assert!(
        goes_live(&browser).await,
        "the page of a new room did not get its socket"
    );
    let refused: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.contains("path=/ws/") && (l.contains(" status=4") || l.contains(" status=5")))
        .collect();
    assert!(refused.is_empty(), "sockets refused: {refused:?}");

    // Type a name and a message, send with Enter.
    browser
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    let msg = browser.find(Locator::Id("msg")).await.unwrap();
    msg.send_keys("hello from chromium\u{E007}").await.unwrap();
    wait_for_chat(&browser, "alice: hello from chromium").await;
    assert_eq!(
        msg.prop("value").await.unwrap().as_deref(),
        Some(""),
        "message box cleared"
    );

    // The button sends too, and the name is kept.
    msg.send_keys("second").await.unwrap();
    browser
        .find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_chat(&browser, "alice: second").await;

    // A message from someone else arrives by polling.
    post_ok(&server, &room, &[("username", "bob"), ("msg", "hi alice")]).await;
    wait_for_chat(&browser, "bob: hi alice").await;

    // Markup is shown as text and never runs.
    msg.send_keys(
        "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">\u{E007}",
    )
    .await
    .unwrap();
    let text = wait_for_chat(&browser, "alice: <script>window.pwned = 1</script>").await;
    assert!(text.contains("<img src=x onerror=\"window.pwned = 2\">"));
    let pwned = browser
        .execute("return window.pwned === undefined", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, true, "posted markup ran");
    let elements = browser.find_all(Locator::Css("#chat *")).await.unwrap();
    assert!(elements.is_empty(), "the transcript holds no elements");

    // The page matches the server's transcript, and the name survives a reload.
    assert_eq!(chat_text(&browser).await, transcript(&server, &room).await);
    browser.refresh().await.unwrap();
    let name = browser
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("alice"));
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_keeps_polling_through_an_outage() {
    let db = TestDb::create(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = || ServerOptions {
        database_url: Some(db.url.clone()),
        env: vec![("ROCKET_PORT".into(), port.to_string())],
        cwd: Some(dir.path().to_path_buf()),
    };
    let server = Server::start_with(options()).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    let room = room("outage");
    browser
        .goto(&format!("{}/{room}", server.url))
        .await
        .unwrap();
    post_ok(&server, &room, &[("username", "a"), ("msg", "before")]).await;
    wait_for_chat(&browser, "a: before").await;

    // The server goes away; the seed's page would stop polling for good here.
    server.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = browser
        .find(Locator::Id("status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        status.contains("retrying"),
        "the page says it is retrying: {status:?}"
    );

    let server = Server::start_with(options()).await;
    post_ok(&server, &room, &[("username", "a"), ("msg", "after")]).await;
    let text = wait_for_chat(&browser, "a: after").await;
    assert_eq!(lines(&text), ["a: before", "a: after"]);
    browser.close().await.unwrap();
}

/// Two people, two browsers, each on its own replica (the two share MariaDB and Redis):
/// each sees the other's lines live. (nginx in front spreads requests round robin, which
/// would not promise two replicas; tests/scale_out.rs covers the path through nginx.)
#[tokio::test(flavor = "multi_thread")]
async fn two_browsers_on_two_replicas_chat_live() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let replicas = replicas(&db, &redis, 2).await;
    let room = room("duo");
    post_ok(
        &replicas[0],
        &room,
        &[("username", "host"), ("msg", "welcome")],
    )
    .await;
    let driver = ChromeDriver::start().await;
    let (alice, bob) = (driver.browser().await, driver.browser().await);
    for (browser, name, replica) in [(&alice, "alice", &replicas[0]), (&bob, "bob", &replicas[1])] {
        browser
            .goto(&format!("{}/{room}", replica.url))
            .await
            .unwrap();
        wait_for_chat(browser, "host: welcome").await;
        browser
            .find(Locator::Id("username"))
            .await
            .unwrap()
            .send_keys(name)
            .await
            .unwrap();
    }
    let say = |browser: &Client, text: &str| {
        let text = format!("{text}\u{E007}");
        let browser = browser.clone();
        async move {
            browser
                .find(Locator::Id("msg"))
                .await
                .unwrap()
                .send_keys(&text)
                .await
                .unwrap()
        }
    };
    say(&alice, "hi bob").await;
    wait_for_chat(&bob, "alice: hi bob").await;
    say(&bob, "hi alice").await;
    wait_for_chat(&alice, "bob: hi alice").await;
    for browser in [&alice, &bob] {
        let shown = lines(&chat_text(browser).await);
        assert_eq!(shown, ["host: welcome", "alice: hi bob", "bob: hi alice"]);
    }
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    db.drop_db().await;
}

/// Whether the page is on its socket (not polling) within 10 s.
async fn goes_live(browser: &Client) -> bool {
    eventually(Duration::from_secs(10), || async {
        browser
            .execute("return window.ferrochat.mode", vec![])
            .await
            .unwrap()
            == "websocket"
    })
    .await
}

/// The text of an element, "" while it is not there.
async fn text_of(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits up to 15 s for `css` to show `needle`.
async fn wait_for(browser: &Client, css: &str, needle: &str) -> String {
    let mut text = String::new();
    for _ in 0..150 {
        text = text_of(browser, css).await;
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{needle:?} never appeared in {css}; it shows {text:?}");
}

/// Two people in one room: each sees the other online, sees them typing, gets their file,
/// and a mention lights the other's badge live.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_presence_typing_files_and_mentions() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let driver = ChromeDriver::start().await;
    let room = room("social");
    post_ok(
        &server,
        &room,
        &[("username", "setup"), ("msg", "room exists")],
    )
    .await;

    let mut browsers = Vec::new();
    for name in ["ann", "ben"] {
        let browser = driver.browser().await;
        // The name is chosen before the page opens, as a returning user's would be.
        browser
            .goto(&format!("{}/{room}", server.url))
            .await
            .unwrap();
        browser
            .execute(
                &format!("localStorage.setItem('ferrochat.username', '{name}')"),
                vec![],
            )
            .await
            .unwrap();
        browser.refresh().await.unwrap();
        wait_for_chat(&browser, "setup: room exists").await;
        browsers.push(browser);
    }
    let (ann, ben) = (&browsers[0], &browsers[1]);
    for browser in [ann, ben] {
        assert!(goes_live(browser).await, "the page did not get a socket");
    }

    // Online.
    wait_for(ann, "#online", "ben").await;
    wait_for(ann, "#online", "ann (you)").await;
    wait_for(ben, "#online", "ann").await;

    // Typing.
    ann.find(Locator::Id("msg"))
        .await
        .unwrap()
        .send_keys("hello @be")
        .await
        .unwrap();
    wait_for(ben, "#typing", "ann is typing").await;
    // A mention, live.
    ann.find(Locator::Id("msg"))
        .await
        .unwrap()
        .send_keys("n\u{E007}")
        .await
        .unwrap();
    wait_for_chat(ben, "ann: hello @ben").await;
    wait_for(ben, "#mention-count", "1").await;
    let typing_gone = eventually(Duration::from_secs(8), || async {
        text_of(ben, "#typing").await.is_empty()
    })
    .await;
    assert!(typing_gone, "typing is still shown after the message");
    ben.find(Locator::Id("mentions"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(ben, "#mention-list", "ann mentioned you").await;
    wait_for(ben, "#mention-count", "0").await;

    // A file: Ann attaches it, Ben gets the link and the transcript line.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.txt");
    std::fs::write(&path, "the plan, in full").unwrap();
    ann.find(Locator::Id("attach"))
        .await
        .unwrap()
        .send_keys(path.to_str().unwrap())
        .await
        .unwrap();
    wait_for_chat(ben, "ann: plan.txt").await;
    wait_for(ben, "#files", "plan.txt").await;
    let href = ben
        .find(Locator::Css("#files a"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("a download link");
    let body = client()
        .get(format!(
            "{}{}",
            server.url,
            href.trim_start_matches(&server.url)
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "the plan, in full");

    // Ann leaves: Ben's list drops her (her socket was her presence; the page says goodbye).
    ann.close_window().await.ok();
    let gone = eventually(Duration::from_secs(20), || async {
        !text_of(ben, "#online").await.contains("ann")
    })
    .await;
    assert!(gone, "ann is still listed online");
    for browser in browsers {
        let _ = browser.close().await;
    }
    db.drop_db().await;
}

/// With `auth = "required"`, the page asks a newcomer to sign in, registers them, and
/// then chats under their own name; a wrong password is told on the page.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_signs_in_when_auth_is_required() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_AUTH", "required")).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    let room = room("signin");
    browser
        .goto(&format!("{}/{room}", server.url))
        .await
        .unwrap();
    let heading = browser
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, format!("Sign in to {room}"));

    let type_in = |id: &'static str, text: &'static str| {
        let browser = browser.clone();
        async move {
            let field = browser.find(Locator::Id(id)).await.unwrap();
            field.clear().await.unwrap();
            field.send_keys(text).await.unwrap();
        }
    };
    type_in("signin-name", "carol").await;
    type_in("signin-password", "a long secret").await;
    browser
        .find(Locator::Id("register-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Registered and signed in: the room, under her name, which she cannot change.
    browser
        .wait()
        .for_element(Locator::Id("chat"))
        .await
        .unwrap();
    let me = browser
        .find(Locator::Id("me"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(me, "carol");
    let name = browser.find(Locator::Id("username")).await.unwrap();
    assert_eq!(
        name.attr("readonly").await.unwrap().as_deref(),
        Some("true")
    );
    let msg = browser.find(Locator::Id("msg")).await.unwrap();
    msg.send_keys("signed in and chatting\u{E007}")
        .await
        .unwrap();
    wait_for_chat(&browser, "carol: signed in and chatting").await;

    // Signed out, then a wrong password: the page says so and stays.
    browser
        .find(Locator::Id("signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Id("signin"))
        .await
        .unwrap();
    type_in("signin-name", "carol").await;
    type_in("signin-password", "not her secret").await;
    browser
        .find(Locator::Id("signin-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut said = String::new();
    for _ in 0..100 {
        said = browser
            .find(Locator::Id("signin-error"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if !said.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(said, "wrong username or password");
    browser.close().await.unwrap();
    db.drop_db().await;
}
