//! The chat page in a real browser (Debian's Chromium through chromedriver), used the way
//! people use it: found by role and accessible name, typed into, clicked, two people at
//! once where two people talk. Every test reads the console (it must stay empty) and the
//! first runs axe-core over the page.

mod common;

use common::chrome::{Browser, ChromeDriver, Name, Window, DESKTOP, PHONE};
use common::*;
use fantoccini::Locator;
use serde_json::{json, Value};
use std::time::Duration;

const ENTER: &str = "\u{E007}";
const ARROW_UP: &str = "\u{E013}";
const CONTROL: &str = "\u{E009}";
const RELEASE: &str = "\u{E000}";

/// The console must be empty: anything there fails the test with what it says.
async fn assert_quiet(browser: &Browser, who: &str) {
    let said = browser.console().await;
    assert!(said.is_empty(), "{who}'s console: {said:?}");
}

async fn assert_accessible(browser: &Browser, what: &str) {
    let found = browser.accessibility_violations().await;
    assert!(found.is_empty(), "axe-core on {what}: {found:?}");
}

/// A guest chooses a name, as a returning visitor's is remembered.
async fn as_guest(browser: &Browser, server: &Server, room: &str, name: &str) {
    browser.goto(&format!("{}/{room}", server.url)).await;
    browser
        .js(&format!(
            "localStorage.setItem('ferrochat.username', {})",
            json!(name)
        ))
        .await;
    browser.client.refresh().await.unwrap();
    assert!(
        browser.goes_live().await,
        "{name}'s page did not get a socket"
    );
}

/// Registers through the page's own "Sign in" dialog, which then shows the room as them.
async fn register_on_page(browser: &Browser, server: &Server, room: &str, name: &str) {
    browser.goto(&format!("{}/{room}", server.url)).await;
    // In open mode the room shows first and signing in is one click away; with
    // `auth = "required"` the form is the first screen.
    if browser
        .shows("button", Name::Is("Sign in"), Duration::from_secs(2))
        .await
        && !browser
            .shows("textbox", Name::Is("Username"), Duration::from_millis(100))
            .await
    {
        browser.click("button", Name::Is("Sign in")).await;
    }
    browser
        .type_into("textbox", Name::Is("Username"), name)
        .await;
    browser
        .type_into("textbox", Name::Is("Password"), "a long secret")
        .await;
    browser.click("button", Name::Is("Register")).await;
    browser.find("button", Name::Is("Sign out")).await;
    assert!(
        browser.goes_live().await,
        "{name}'s page did not get a socket"
    );
}

async fn say(browser: &Browser, text: &str) {
    browser
        .type_into("textbox", Name::Is("Message"), &format!("{text}{ENTER}"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_chats_in_a_real_browser() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    let room = room("browser");

    browser.goto(&format!("{}/{room}", server.url)).await;
    browser.find("heading", Name::Is(&room)).await;
    assert_eq!(
        browser.js("return typeof window.jQuery").await,
        "function",
        "jQuery is served by the app itself"
    );
    // A room nobody has written in yet: the page goes live on its socket at once, and no
    // socket of it is refused.
    assert!(
        browser.goes_live().await,
        "the page of a new room did not get its socket"
    );
    let refused: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.contains("path=/ws/") && (l.contains(" status=4") || l.contains(" status=5")))
        .collect();
    assert!(refused.is_empty(), "sockets refused: {refused:?}");
    browser.find("navigation", Name::Is("Rooms")).await;
    browser.find("link", Name::StartsWith(&room)).await;

    // A name and a message, sent with Enter: the first message makes the room.
    browser
        .type_into("textbox", Name::Is("Your name"), "alice")
        .await;
    say(&browser, "hello from chromium").await;
    let article = browser.message("hello from chromium").await;
    let (role, name) = browser.role_and_name(&article).await;
    assert_eq!(role, "article");
    assert!(name.starts_with("alice"), "the message is named {name:?}");
    let composer = browser.find("textbox", Name::Is("Message")).await;
    assert_eq!(composer.prop("value").await.unwrap().as_deref(), Some(""));

    // The button sends too; Shift+Enter keeps a line break in one message.
    composer
        .send_keys("two\u{E008}\u{E007}\u{E000}lines")
        .await
        .unwrap();
    browser.click("button", Name::Is("Send")).await;
    let two = browser.message("lines").await;
    assert_eq!(
        two.find(Locator::Css(".text"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "two\nlines"
    );

    // A message from another door (curl) arrives live, with a link that is a link.
    post_ok(
        &server,
        &room,
        &[
            ("username", "bob"),
            ("msg", "hi alice, see https://example.com/a"),
        ],
    )
    .await;
    let from_bob = browser.message("hi alice").await;
    let link = browser
        .find_in(Some(&from_bob), "link", Name::Is("https://example.com/a"))
        .await;
    assert_eq!(
        link.attr("rel").await.unwrap().as_deref(),
        Some("noopener noreferrer")
    );

    // Markup is shown as text and never runs.
    say(
        &browser,
        "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">",
    )
    .await;
    let markup = browser.message("<script>window.pwned = 1</script>").await;
    assert!(markup.text().await.unwrap().contains("onerror="));
    assert_eq!(browser.js("return window.pwned === undefined").await, true);
    let inside = markup
        .find_all(Locator::Css(".text *"))
        .await
        .unwrap_or_default();
    assert!(inside.is_empty(), "a message's text holds elements");

    // The page shows what the server holds, and the name survives a reload.
    let transcript = transcript(&server, &room).await;
    assert_eq!(lines(&transcript).len(), 4, "{transcript}");
    browser.client.refresh().await.unwrap();
    browser.message("hi alice").await;
    let name = browser.find("textbox", Name::Is("Your name")).await;
    assert_eq!(name.prop("value").await.unwrap().as_deref(), Some("alice"));
    assert_eq!(browser.message_texts().await.len(), 4);

    assert_accessible(&browser, "the room").await;
    assert_quiet(&browser, "alice").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_keeps_up_through_an_outage() {
    let db = TestDb::create(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let options = || ServerOptions {
        database_url: Some(db.url.clone()),
        env: vec![("ROCKET_PORT".into(), port.to_string())],
        cwd: Some(dir.path().to_path_buf()),
    };
    let server = Server::start_with(options()).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    let room = room("outage");
    post_ok(&server, &room, &[("username", "a"), ("msg", "before")]).await;
    as_guest(&browser, &server, &room, "watcher").await;
    browser.message("before").await;

    // The server goes away: the page says so, discreetly, and keeps trying.
    server.stop();
    let status = browser.find("status", Name::Contains("")).await;
    let said = eventually(Duration::from_secs(10), || async {
        status
            .text()
            .await
            .unwrap_or_default()
            .contains("Reconnecting")
    })
    .await;
    assert!(said, "the page does not say it is reconnecting");

    let server = Server::start_with(options()).await;
    post_ok(&server, &room, &[("username", "a"), ("msg", "after")]).await;
    browser.message("after").await;
    assert_eq!(browser.message_texts().await, ["a: before", "a: after"]);
    assert!(
        browser.goes_live().await,
        "the page did not get its socket back"
    );
    // The console may name the socket that failed while the server was away, and nothing else.
    let said: Vec<String> = browser
        .console()
        .await
        .into_iter()
        .filter(|l| !l.contains("/ws/") && !l.contains("ERR_CONNECTION_REFUSED"))
        .collect();
    assert!(said.is_empty(), "console: {said:?}");
    browser.close().await;
}

/// Two people, two browsers, each on its own replica (the two share MariaDB and Redis):
/// each sees the other's messages live.
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
    as_guest(&alice, &replicas[0], &room, "alice").await;
    as_guest(&bob, &replicas[1], &room, "bob").await;
    for browser in [&alice, &bob] {
        browser.message("welcome").await;
    }
    say(&alice, "hi bob").await;
    bob.message("hi bob").await;
    say(&bob, "hi alice").await;
    alice.message("hi alice").await;
    for browser in [&alice, &bob] {
        assert_eq!(
            browser.message_texts().await,
            ["host: welcome", "alice: hi bob", "bob: hi alice"]
        );
        assert_quiet(browser, "a replica's reader").await;
    }
    alice.close().await;
    bob.close().await;
    db.drop_db().await;
}

/// Two signed-in people, in each mode: a reply, a reaction, an edit (Up arrow) and a
/// deletion by one are seen live by the other; who is online and who is typing show; `@`
/// completes a name; only one's own messages offer Edit and Delete; one starts a direct
/// conversation by the other's name and makes a room.
#[tokio::test(flavor = "multi_thread")]
async fn two_people_reply_react_edit_and_delete_live() {
    two_people_talk("open").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_people_talk_when_auth_is_required() {
    two_people_talk("required").await;
}

async fn two_people_talk(auth: &str) {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(ServerOptions::new(&db.url).env("ROCKET_AUTH", auth)).await;
    let driver = ChromeDriver::start().await;
    let room = room("talk");
    let (ann, ben) = (driver.browser().await, driver.browser().await);
    register_on_page(&ann, &server, &room, "ann").await;
    register_on_page(&ben, &server, &room, "ben").await;
    ann.find("navigation", Name::Is("Rooms")).await;

    // Online, and typing.
    assert!(
        eventually(Duration::from_secs(20), || async {
            ann.js("return document.getElementById('online').textContent")
                .await
                .as_str()
                .is_some_and(|t| t.contains("ben"))
        })
        .await,
        "ann does not see ben online"
    );
    // `@` offers the names of who is here; Enter takes the one chosen.
    ann.type_into("textbox", Name::Is("Message"), "@b").await;
    ann.find("option", Name::Is("@ben")).await;
    ann.keys(ENTER).await;
    let composer = ann.find("textbox", Name::Is("Message")).await;
    assert_eq!(
        composer.prop("value").await.unwrap().as_deref(),
        Some("@ben ")
    );
    composer.clear().await.unwrap();
    ann.type_into("textbox", Name::Is("Message"), "first from ann")
        .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            ben.js("return document.getElementById('typing').textContent")
                .await
                .as_str()
                .is_some_and(|t| t.contains("ann is typing"))
        })
        .await,
        "ben does not see ann typing"
    );
    ann.keys(ENTER).await;
    let first_at_ben = ben.message("first from ann").await;
    let offered = ben.names(Some(&first_at_ben), "button").await;
    assert!(
        !offered.iter().any(|n| n == "Edit" || n == "Delete"),
        "ben is offered {offered:?} on ann's message"
    );

    // Ben replies: the reply shows what it answers, at both.
    ben.action(&first_at_ben, "Reply")
        .await
        .click()
        .await
        .unwrap();
    say(&ben, "agreed").await;
    for browser in [&ann, &ben] {
        let reply = browser.message("agreed").await;
        browser
            .find_in(
                Some(&reply),
                "button",
                Name::Is("In reply to ann: first from ann"),
            )
            .await;
    }

    // Ann reacts to the reply; Ben adds his by clicking the reaction.
    let reply_at_ann = ann.message("agreed").await;
    ann.action(&reply_at_ann, "React")
        .await
        .click()
        .await
        .unwrap();
    ann.click("button", Name::Is("React with 👍")).await;
    let reply_at_ben = ben.message("agreed").await;
    let thumbs = ben
        .find_in(Some(&reply_at_ben), "button", Name::StartsWith("👍 1"))
        .await;
    thumbs.click().await.unwrap();
    let reply_at_ann = ann.message("agreed").await;
    ann.find_in(Some(&reply_at_ann), "button", Name::StartsWith("👍 2"))
        .await;

    // Ann edits her message from the keyboard: Up arrow in the empty composer, then Enter.
    let composer = ann.find("textbox", Name::Is("Message")).await;
    composer.click().await.unwrap();
    composer.send_keys(ARROW_UP).await.unwrap();
    let edit = ann.find("textbox", Name::Is("Edit message")).await;
    edit.clear().await.unwrap();
    edit.send_keys(&format!("first, edited{ENTER}"))
        .await
        .unwrap();
    let edited = ben.message("first, edited").await;
    assert!(edited.text().await.unwrap().contains("(edited)"));
    ann.message("first, edited").await;
    ann.screenshot(&format!("{REPO}/docs/screenshots/light.png"))
        .await;

    // Ann deletes it: gone at Ben's at once, and the reply says what it answered is gone.
    let mine = ann.message("first, edited").await;
    ann.action(&mine, "Delete").await.click().await.unwrap();
    ann.client.accept_alert().await.unwrap();
    assert!(ben.message_gone("first, edited").await, "ben still sees it");
    assert!(ann.message_gone("first, edited").await, "ann still sees it");

    // A direct conversation, started by the other's name: Ben finds it in his list.
    ann.click("button", Name::Is("New direct message")).await;
    // A name field that suggests the people seen so far.
    ann.type_into("combobox", Name::Is("Name"), "ben").await;
    ann.click("button", Name::Is("Start conversation")).await;
    ann.find("heading", Name::Is("ben")).await;
    say(&ann, "just between us").await;
    ann.message("just between us").await;
    ben.click("link", Name::StartsWith("ann, 1 unread")).await;
    ben.message("just between us").await;

    // A room of one's own.
    ben.click("button", Name::Is("New room")).await;
    ben.type_into("textbox", Name::Is("Room name"), "Plans")
        .await;
    ben.click("button", Name::Is("Create room")).await;
    ben.find("heading", Name::Is("Plans")).await;
    ben.find("link", Name::StartsWith("Plans")).await;

    for (browser, who) in [(&ann, "ann"), (&ben, "ben")] {
        assert_accessible(browser, "a conversation").await;
        assert_quiet(browser, who).await;
    }
    ann.close().await;
    ben.close().await;
}

/// Unread counts in the rooms list move as the other person writes, a mention is marked,
/// the title counts, opening the room shows where the new messages start, the back button
/// goes back, and search (Ctrl+K) opens another room at the message found.
#[tokio::test(flavor = "multi_thread")]
async fn rooms_unread_marks_and_search() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let driver = ChromeDriver::start().await;
    let (alpha, beta, gamma) = (room("alpha"), room("beta"), room("gamma"));
    for r in [&alpha, &beta] {
        post_ok(&server, r, &[("username", "setup"), ("msg", "room exists")]).await;
    }
    post_ok(
        &server,
        &gamma,
        &[
            ("username", "carol"),
            ("msg", "the haystack holds one needle"),
        ],
    )
    .await;
    let (ann, ben) = (driver.browser().await, driver.browser().await);
    as_guest(&ann, &server, &alpha, "ann").await;
    as_guest(&ben, &server, &alpha, "ben").await;
    ben.message("room exists").await;

    // Ben moves to beta by its link: the address and the heading follow.
    ben.click("link", Name::StartsWith(&beta)).await;
    ben.find("heading", Name::Is(&beta)).await;
    let url = ben.client.current_url().await.unwrap();
    assert!(url.path().ends_with(&beta), "{url}");

    // Ann writes in alpha: Ben's list counts it, then marks the mention.
    say(&ann, "ping in alpha").await;
    ben.find("link", Name::Is(&format!("{alpha}, 1 unread")))
        .await;
    say(&ann, "@ben look here").await;
    ben.find("link", Name::Is(&format!("{alpha}, 2 unread, 1 mention")))
        .await;
    let title = ben.client.title().await.unwrap();
    assert!(title.starts_with("(2) "), "title {title:?}");

    // Opening alpha shows where the new messages start, and clears the count.
    ben.click("link", Name::StartsWith(&alpha)).await;
    ben.find("separator", Name::Is("New messages")).await;
    ben.message("@ben look here").await;
    ben.find("link", Name::Is(&alpha)).await;

    // The back button goes back to beta.
    ben.client.back().await.unwrap();
    ben.find("heading", Name::Is(&beta)).await;

    // Ctrl+K, a word, and the result opens gamma at that message.
    ben.keys(&format!("{CONTROL}k{RELEASE}")).await;
    let search = ben.find("searchbox", Name::Is("Search")).await;
    let focused = ben.client.active_element().await.unwrap();
    assert_eq!(
        focused.element_id().to_string(),
        search.element_id().to_string(),
        "Ctrl+K did not reach the search box"
    );
    ben.keys("needle").await;
    ben.click("link", Name::Contains("needle")).await;
    ben.find("heading", Name::Is(&gamma)).await;
    let url = ben.client.current_url().await.unwrap();
    assert!(
        url.path().ends_with(&gamma) && url.fragment().is_some_and(|f| f.starts_with("m-")),
        "{url}"
    );
    let found = ben.message("one needle").await;
    assert_eq!(
        ben.js("return document.activeElement.closest('article') && document.activeElement.closest('article').id")
            .await,
        Value::String(found.attr("id").await.unwrap().unwrap_or_default())
    );

    for (browser, who) in [(&ann, "ann"), (&ben, "ben")] {
        assert_quiet(browser, who).await;
    }
    ann.close().await;
    ben.close().await;
}

/// A 1200x800 PNG, made here.
fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// An image attached by one person shows as a thumbnail (named by its file) to both; a
/// click opens the whole image; another file is a chip with its name.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_shows_as_a_thumbnail_to_both() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let driver = ChromeDriver::start().await;
    let room = room("pictures");
    post_ok(
        &server,
        &room,
        &[("username", "setup"), ("msg", "room exists")],
    )
    .await;
    let (ann, ben) = (driver.browser().await, driver.browser().await);
    as_guest(&ann, &server, &room, "ann").await;
    as_guest(&ben, &server, &room, "ben").await;

    let dir = tempfile::tempdir().unwrap();
    let picture = dir.path().join("plan.png");
    std::fs::write(&picture, png(1200, 800)).unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "the plan, in words").unwrap();
    ann.find("button", Name::Is("Attach a file")).await;
    // The button opens the system's file chooser, which a test cannot drive: the path goes
    // to the file field behind it, as the chooser would hand it.
    let field = ann
        .client
        .find(Locator::Css("input[type=file]"))
        .await
        .unwrap();
    field.send_keys(picture.to_str().unwrap()).await.unwrap();

    for browser in [&ann, &ben] {
        let thumb = browser.find("img", Name::Is("plan.png")).await;
        let width = browser
            .client
            .execute(
                "return arguments[0].naturalWidth",
                vec![serde_json::to_value(&thumb).unwrap()],
            )
            .await
            .unwrap();
        assert_eq!(width, 360, "the thumbnail is the server's, 360 wide");
    }
    ben.click("link", Name::Is("plan.png")).await;
    let full = ben.find("dialog", Name::Is("plan.png")).await;
    let img = full.find(Locator::Css("img")).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            ben.client
                .execute(
                    "return arguments[0].naturalWidth",
                    vec![serde_json::to_value(&img).unwrap()],
                )
                .await
                .unwrap()
                == 1200
        })
        .await,
        "the whole image did not open"
    );
    ben.keys("\u{E00C}").await; // Escape closes it

    ann.client
        .find(Locator::Css("input[type=file]"))
        .await
        .unwrap()
        .send_keys(notes.to_str().unwrap())
        .await
        .unwrap();
    let chip = ben.find("link", Name::StartsWith("notes.txt")).await;
    let href = chip.attr("href").await.unwrap().expect("a download link");
    let body = client()
        .get(format!("{}{href}", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "the plan, in words");

    for (browser, who) in [(&ann, "ann"), (&ben, "ben")] {
        assert_quiet(browser, who).await;
    }
    ann.close().await;
    ben.close().await;
}

/// At 360 px the rooms are a drawer the menu button opens; a message can be sent there.
/// In the dark theme the page follows the system. Both are screenshots in the README.
#[tokio::test(flavor = "multi_thread")]
async fn a_phone_gets_a_drawer_and_the_dark_theme_follows_the_system() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let driver = ChromeDriver::start().await;
    let (room, other) = (room("phone"), room("elsewhere"));
    post_ok(
        &server,
        &other,
        &[("username", "dee"), ("msg", "over here")],
    )
    .await;
    post_ok(
        &server,
        &room,
        &[("username", "dee"), ("msg", "hello phone")],
    )
    .await;
    post_ok(
        &server,
        &room,
        &[
            ("username", "eli"),
            ("msg", "welcome, see https://example.com"),
        ],
    )
    .await;

    let phone = driver.browser_with(PHONE).await;
    as_guest(&phone, &server, &room, "fay").await;
    phone.message("hello phone").await;
    assert!(
        !phone
            .shows("link", Name::StartsWith(&other), Duration::from_millis(500))
            .await,
        "the rooms are open on a phone before anyone asked"
    );
    phone.click("button", Name::Is("Show rooms")).await;
    phone.click("link", Name::StartsWith(&other)).await;
    phone.find("heading", Name::Is(&other)).await;
    assert!(
        !phone
            .shows("link", Name::StartsWith(&room), Duration::from_millis(500))
            .await,
        "the drawer stays open after a room was chosen"
    );
    say(&phone, "sent from a phone").await;
    phone.message("sent from a phone").await;
    phone
        .screenshot(&format!("{REPO}/docs/screenshots/phone.png"))
        .await;
    assert_accessible(&phone, "the phone layout").await;
    assert_quiet(&phone, "the phone").await;
    phone.close().await;

    let dark = driver
        .browser_with(Window {
            dark: true,
            ..DESKTOP
        })
        .await;
    as_guest(&dark, &server, &room, "gus").await;
    dark.message("hello phone").await;
    let background = dark
        .js("return getComputedStyle(document.body).backgroundColor")
        .await;
    assert_eq!(background, "rgb(22, 25, 29)", "the dark theme is not on");
    dark.screenshot(&format!("{REPO}/docs/screenshots/dark.png"))
        .await;
    assert_accessible(&dark, "the dark theme").await;
    assert_quiet(&dark, "the dark page").await;
    dark.close().await;
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
    browser.goto(&format!("{}/{room}", server.url)).await;
    browser
        .find("heading", Name::Is(&format!("Sign in to {room}")))
        .await;
    assert_accessible(&browser, "the sign-in page").await;

    browser
        .type_into("textbox", Name::Is("Username"), "carol")
        .await;
    browser
        .type_into("textbox", Name::Is("Password"), "a long secret")
        .await;
    browser.click("button", Name::Is("Register")).await;
    // Registered and signed in: the room, under her name.
    browser.find("button", Name::Is("Sign out")).await;
    assert!(browser.goes_live().await);
    say(&browser, "signed in and chatting").await;
    let mine = browser.message("signed in and chatting").await;
    let (_, name) = browser.role_and_name(&mine).await;
    assert!(name.starts_with("carol"), "{name}");
    // Her own message offers Edit and Delete.
    browser.action(&mine, "Edit").await;

    // Signed out, then a wrong password: the page says so and stays.
    browser.click("button", Name::Is("Sign out")).await;
    browser
        .type_into("textbox", Name::Is("Username"), "carol")
        .await;
    browser
        .type_into("textbox", Name::Is("Password"), "not her secret")
        .await;
    browser.click("button", Name::Is("Sign in")).await;
    let alert = browser
        .client
        .find(Locator::Css("[role=alert]"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            alert.text().await.unwrap_or_default() == "wrong username or password"
        })
        .await,
        "the page does not say the password was wrong"
    );
    // A failed sign-in is a 401 the browser itself notes; nothing else may be there.
    let said: Vec<String> = browser
        .console()
        .await
        .into_iter()
        .filter(|l| !l.contains("/api/auth/login") || !l.contains("401"))
        .collect();
    assert!(said.is_empty(), "console: {said:?}");
    browser.close().await;
    db.drop_db().await;
}

/// The Flask original's own page (its template as the seed serves it, jQuery from this
/// server since the test machine has no internet) chats through ferrochat unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn the_flask_originals_own_page_still_chats() {
    let db = TestDb::create(Backend::Sqlite).await;
    let assets = tempfile::tempdir().unwrap();
    let room = room("flask");
    let page = FLASK_PAGE.replace("{{ room }}", &room).replace(
        "https://code.jquery.com/jquery-3.7.1.min.js",
        "/static/vendor/jquery.min.js",
    );
    std::fs::write(assets.path().join("flask.html"), page).unwrap();
    let server = Server::start_with(
        ServerOptions::new(&db.url).env("ROCKET_STATIC_DIR", assets.path().to_str().unwrap()),
    )
    .await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    browser
        .goto(&format!("{}/static/flask.html", server.url))
        .await;
    browser
        .client
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Id("msg"))
        .await
        .unwrap()
        .send_keys("hello from the original")
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let chat = browser.client.find(Locator::Id("chat")).await.unwrap();
    // Alice's post first (the page sends it in the background), then Bob's by curl.
    assert!(
        eventually(Duration::from_secs(10), || async {
            chat.text()
                .await
                .unwrap_or_default()
                .contains("alice: hello from the original")
        })
        .await,
        "the original's page did not post"
    );
    post_ok(&server, &room, &[("username", "bob"), ("msg", "hi alice")]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            let text = chat.text().await.unwrap_or_default();
            lines(&text) == ["alice: hello from the original", "bob: hi alice"]
        })
        .await,
        "the original's page shows {:?}",
        chat.text().await
    );
    assert_quiet(&browser, "the original's page").await;
    browser.close().await;
}

/// The Flask original's `templates/index.html`, as the seed has it.
const FLASK_PAGE: &str = r##"<!doctype html>
<html><head><meta charset="utf-8"><title>Chat {{ room }}</title>
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script></head>
<body><h1>Room {{ room }}</h1><pre id="chat"></pre>
<form id="f"><input id="username" placeholder="name"><input id="msg" placeholder="message"><button>send</button></form>
<script>
var room = "{{ room }}";
function load(){ $.get("/api/chat/" + room, function(d){ $("#chat").text(d); }); }
$("#f").submit(function(e){ e.preventDefault(); $.post("/api/chat/" + room, {username: $("#username").val(), msg: $("#msg").val()}, load); $("#msg").val(""); });
setInterval(load, 1500); load();
</script></body></html>"##;

/// A room of 2,000 messages: the first paint's time is printed (the page's own
/// performance mark), and scrolling back through all of it keeps the page to a window of
/// messages, never the whole history.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_room_opens_fast_and_scrolls_in_a_window() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let room = room("long");
    let c = client();
    let url = format!("{}/api/chat/{room}", server.url);
    let posts = (0..2000).map(|i| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let status = c
                .post(&url)
                .form(&[
                    ("username", format!("writer{}", i % 7)),
                    ("msg", format!("line {i}")),
                ])
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 204);
        }
    });
    futures_util::stream::iter(posts)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;

    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{}/{room}", server.url)).await;
    browser.message("line 1999").await;
    let shown = browser
        .js("const m = performance.getEntriesByName('ferrochat:messages-shown')[0]; return m && m.startTime")
        .await;
    println!(
        "first paint of the newest messages of a 2,000-message room: {shown} ms after navigation"
    );

    let mut most = 0;
    for _ in 0..60 {
        let count = browser
            .js("const l = document.querySelector('[role=log]'); l.scrollTop = 0; l.dispatchEvent(new Event('scroll')); return l.querySelectorAll('article').length")
            .await
            .as_u64()
            .unwrap_or(0);
        most = most.max(count);
        if browser
            .js("return !document.getElementById('history-start').hidden")
            .await
            == true
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    browser.message("line 0").await;
    assert!(most <= 300, "the page held {most} messages at once");
    assert_quiet(&browser, "the long room's reader").await;
    browser.close().await;
}

use futures_util::StreamExt;
