//! The socket session as a service, with no socket: `sockets::Session` runs over channels,
//! is fed frames and the room's changes, and the frames it writes are read back. The
//! server around it is the whole in-process app (`tests/app`), so a post through the HTTP
//! API reaches the session as it reaches a real socket. What needs a real connection (the
//! upgrade, the frame size cap, pings through a proxy, other replicas) stays in
//! `tests/websocket.rs`.

mod app;

use app::{unique, Persona, TestApp};
use ferrochat::domain::{AuthMode, Caller, Peer, RoomName};
use ferrochat::sockets::{Asked, Resume, Session, Sockets, CLOSE_NO_ACCESS, CLOSE_ROOM_DELETED};
use rocket::futures::channel::mpsc;
use rocket::futures::{SinkExt, StreamExt};
use rocket::http::Method;
use rocket_ws::Message;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// One session over channels: what the test sends it, and what it writes.
struct Socket {
    to: mpsc::UnboundedSender<Message>,
    from: mpsc::Receiver<Message>,
    user_id: String,
}

impl Socket {
    async fn say(&mut self, frame: Value) {
        self.to
            .send(Message::Text(frame.to_string()))
            .await
            .unwrap();
    }

    /// The next frame it writes, within 5 s.
    async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(5), self.from.next())
            .await
            .expect("a frame within 5 s")
            .expect("the session still runs")
    }

    /// The next text frame whose `type` is `kind` (others are skipped), as JSON.
    async fn next_of(&mut self, kind: &str) -> Value {
        self.next_where(|frame| frame["type"] == kind).await
    }

    /// The next text frame, as JSON, that is not a join or a leave.
    async fn next_said(&mut self) -> Value {
        self.next_where(|frame| {
            !matches!(frame["type"].as_str(), Some("user_joined" | "user_left"))
        })
        .await
    }

    async fn next_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            if let Message::Text(text) = self.next().await {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if wanted(&frame) {
                    return frame;
                }
            }
        }
    }

    /// Nothing is written within `wait`.
    async fn quiet(&mut self, wait: Duration) -> Option<Message> {
        tokio::time::timeout(wait, self.from.next())
            .await
            .ok()
            .flatten()
    }
}

fn sockets(app: &TestApp) -> Arc<Sockets> {
    app.state().sockets.clone()
}

fn guest() -> Caller {
    Caller {
        mode: AuthMode::Open,
        ..Caller::default()
    }
}

fn user(persona: &Persona) -> Caller {
    Caller {
        mode: AuthMode::Open,
        user: Some(Peer {
            user_id: persona.user_id.clone().unwrap(),
            username: persona.username.clone(),
        }),
        ..Caller::default()
    }
}

/// Opens a session as `caller` on `room`, as `http::ws` does after its guards, with the
/// app's frame bucket; `capacity` bounds what it may write before the test reads (a slow
/// reader).
async fn open(
    app: &TestApp,
    caller: Caller,
    room: &str,
    asked: Asked<'_>,
    resume: Resume,
    capacity: usize,
) -> Socket {
    let sockets = sockets(app);
    let room = RoomName::parse(room).unwrap();
    let peer = sockets.peer(&caller, asked).await.expect("a peer");
    let user_id = peer.user_id.clone();
    let start = sockets
        .start(&caller, &room, Some(&peer.user_id), resume)
        .await
        .expect("may read the room");
    let frames = app.state().limiter.frames();
    let session = Session::new(asked.dialect(), peer, frames, Box::new(|| Ok(())));
    let (to, source) = mpsc::unbounded::<Message>();
    let (sink, from) = mpsc::channel::<Message>(capacity);
    let source = source.map(Ok::<_, std::convert::Infallible>);
    tokio::spawn(session.run(sockets, caller, room, start, source, sink));
    Socket { to, from, user_id }
}

/// A public room of `owner`'s.
async fn made(app: &TestApp, owner: &Persona) -> String {
    let room = unique("room");
    let body = json!({"id": room});
    let (status, body) = app
        .call(owner, Method::Post, "/api/chat/rooms", Some(body))
        .await;
    assert_eq!(status, 201, "{body}");
    room
}

async fn posted(app: &TestApp, who: &Persona, room: &str, content: &str) -> i64 {
    let path = format!("/api/chat/rooms/{room}/messages");
    let (status, body) = app
        .call(
            who,
            Method::Post,
            &path,
            Some(json!({ "content": content })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// A message frame is posted as the socket's user and comes back, as everyone's, to every
/// session of the room, the sender's too; the others hear of the join first.
#[rocket::async_test]
async fn a_message_frame_comes_back_to_every_session_of_the_room() {
    let app = TestApp::new().await;
    let room = unique("room");
    let as_ann = Asked::AsUser {
        user_id: "ann",
        username: Some("Ann"),
    };
    let mut ann = open(&app, guest(), &room, as_ann, Resume::Now, 64).await;
    let mut bob = open(&app, guest(), &room, Asked::Room, Resume::Now, 64).await;
    // Ann hears her own join, then Bob's.
    let bobs = bob.user_id.clone();
    let joined = ann
        .next_where(|f| f["type"] == "user_joined" && f["user_id"] == bobs.as_str())
        .await;
    assert_eq!(joined["room_id"], room.as_str());

    ann.say(json!({"type": "message", "content": "hello"}))
        .await;
    for socket in [&mut ann, &mut bob] {
        let frame = socket.next_of("message").await;
        assert_eq!(frame["content"], "hello");
        assert_eq!(frame["user_id"], "ann");
        assert_eq!(frame["username"], "Ann");
        assert_eq!(frame["room_id"], room.as_str());
        assert!(frame["id"].as_i64().unwrap() > 0 && frame["seq"].as_i64().is_some());
    }
    // On `/ws/<room>` a guest's frame names its author.
    bob.say(json!({"type": "message", "content": "hi", "user_id": "bob"}))
        .await;
    assert_eq!(ann.next_of("message").await["user_id"], "bob");
}

/// Typing reaches the others, never the typist; a frame the session cannot take is
/// answered with an error frame, and the session goes on.
#[rocket::async_test]
async fn typing_reaches_the_others_and_a_bad_frame_gets_an_error() {
    let app = TestApp::new().await;
    let room = unique("room");
    let mut ann = open(&app, guest(), &room, Asked::Room, Resume::Now, 64).await;
    let mut bob = open(&app, guest(), &room, Asked::Room, Resume::Now, 64).await;

    ann.say(json!({"type": "typing"})).await;
    let typing = bob.next_of("typing").await;
    assert_eq!(typing["user_id"], ann.user_id.as_str());
    for bad in [
        json!({"type": "shout"}),
        json!({"content": "no type"}),
        json!(7),
    ] {
        ann.say(bad.clone()).await;
        let frame = ann.next_said().await;
        assert_eq!(frame["type"], "error", "{bad}: {frame}");
        assert!(!frame["detail"].as_str().unwrap().is_empty());
    }
    // Its own typing was never sent back: the next frame it gets is its message.
    ann.say(json!({"type": "message", "content": "still here"}))
        .await;
    let frame = ann.next_said().await;
    assert_eq!(
        (frame["type"].as_str(), frame["content"].as_str()),
        (Some("message"), Some("still here"))
    );
}

/// `since` replays what came after a message, oldest first, then live ones, each once;
/// `seq` does the same from a change, edits included.
#[rocket::async_test]
async fn a_session_resumes_without_gap_or_repeat() {
    let app = TestApp::new().await;
    let ann = app.signed_in("ann").await;
    let room = made(&app, &ann).await;
    let first = posted(&app, &ann, &room, "one").await;
    let second = posted(&app, &ann, &room, "two").await;
    let third = posted(&app, &ann, &room, "three").await;
    let edit = format!("/api/chat/messages/{second}");
    let (status, _) = app
        .call(
            &ann,
            Method::Patch,
            &edit,
            Some(json!({"content": "two, edited"})),
        )
        .await;
    assert_eq!(status, 200);

    let resume = Resume::AfterMessage(first);
    let mut late = open(&app, guest(), &room, Asked::Room, resume, 64).await;
    let fourth = posted(&app, &ann, &room, "four").await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let Message::Text(text) = late.next().await else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        match frame["type"].as_str() {
            Some("message") => seen.push(("message", frame["id"].as_i64().unwrap())),
            Some("message_updated") => {
                seen.push(("message_updated", frame["id"].as_i64().unwrap()))
            }
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            ("message", second),
            ("message", third),
            ("message_updated", second),
            ("message", fourth)
        ]
    );
    // Nothing of the room's messages after those four (its own `user_joined` may come at
    // any point: it is no message, and no repeat).
    while let Some(more) = late.quiet(Duration::from_millis(300)).await {
        let Message::Text(text) = &more else { continue };
        let frame: Value = serde_json::from_str(text).unwrap();
        assert!(
            !matches!(frame["type"].as_str(), Some("message" | "message_updated")),
            "after the four: {frame}"
        );
    }

    // From the edit's seq: the fourth message only.
    let (_, changes) = app
        .call(
            &ann,
            Method::Get,
            &format!("/api/chat/rooms/{room}/changes"),
            None,
        )
        .await;
    let edit_seq = changes
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == "message_updated"))
        .and_then(|c| c["seq"].as_i64())
        .expect("the edit is a change");
    let resume = Resume::AfterSeq(edit_seq);
    let mut from_seq = open(&app, guest(), &room, Asked::Room, resume, 64).await;
    assert_eq!(from_seq.next_of("message").await["id"], fourth);
}

/// A session whose reader is slower than the room (a channel of 8 events, a sink of 1)
/// misses events from its channel: it reads them back from the database and sends every
/// message once, in id order.
#[rocket::async_test]
async fn a_session_that_lags_catches_up_from_the_database_in_order() {
    let app = TestApp::with(&[("ws_backlog", "8")]).await;
    let ann = app.signed_in("ann").await;
    let room = made(&app, &ann).await;
    let mut slow = open(&app, guest(), &room, Asked::Room, Resume::Now, 1).await;
    let mut ids = Vec::new();
    for n in 0..60 {
        ids.push(posted(&app, &ann, &room, &format!("m{n}")).await);
    }
    let mut got = Vec::new();
    while got.len() < ids.len() {
        got.push(slow.next_of("message").await["id"].as_i64().unwrap());
    }
    assert_eq!(got, ids, "every message once, in order");
}

/// The relay speaks `{text, type, ts}` only: what it cannot read is dropped without an
/// answer, a message comes back in its shape, and the room's other changes are not sent.
#[rocket::async_test]
async fn the_relay_speaks_text_type_ts_and_drops_the_rest() {
    let app = TestApp::new().await;
    let room = sockets(&app).relay_room.as_str().to_string();
    let mut relay = open(&app, guest(), &room, Asked::Relay, Resume::Now, 64).await;
    relay
        .say(json!({"type": "message", "content": "room dialect"}))
        .await;
    relay.to.send(Message::Binary(vec![1, 2, 3])).await.unwrap();
    assert!(relay.quiet(Duration::from_millis(300)).await.is_none());

    relay
        .say(json!({"text": "hi there", "type": "message", "ts": 1700000000000_i64}))
        .await;
    let Message::Text(text) = relay.next().await else {
        panic!("a text frame")
    };
    let frame: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = frame.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["text", "ts", "type"], "{frame}");
    assert_eq!(frame["type"], "message");
    assert!(frame["text"].as_str().unwrap().ends_with("hi there"));
}

/// Taken out of a private room, a member's session is closed with 4003; a deleted room's
/// sessions are told, then closed with 4004.
#[rocket::async_test]
async fn a_session_ends_when_its_reader_loses_the_room() {
    let app = TestApp::new().await;
    let owner = app.signed_in("owner").await;
    let member = app.signed_in("member").await;
    let room = unique("room");
    let (status, body) = app
        .call(
            &owner,
            Method::Post,
            "/api/chat/rooms",
            Some(json!({"id": room, "private": true})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let members = format!("/api/chat/rooms/{room}/members");
    let add = json!({"user_id": member.user_id});
    let (status, body) = app.call(&owner, Method::Post, &members, Some(add)).await;
    assert!(status < 300, "{status} {body}");

    let mut theirs = open(&app, user(&member), &room, Asked::Room, Resume::Now, 64).await;
    let mut own = open(&app, user(&owner), &room, Asked::Room, Resume::Now, 64).await;
    let removed = format!("{members}/{}", member.user_id.as_deref().unwrap());
    let (status, _) = app.call(&owner, Method::Delete, &removed, None).await;
    assert!(status < 300, "{status}");
    assert_eq!(close_code(&mut theirs).await, CLOSE_NO_ACCESS);

    let (status, _) = app
        .call(
            &owner,
            Method::Delete,
            &format!("/api/chat/rooms/{room}"),
            None,
        )
        .await;
    assert!(status < 300, "{status}");
    assert_eq!(own.next_of("room_deleted").await["room_id"], room.as_str());
    assert_eq!(close_code(&mut own).await, CLOSE_ROOM_DELETED);
}

/// The code of the close frame the session ends with (text frames before it skipped).
async fn close_code(socket: &mut Socket) -> u16 {
    loop {
        match socket.next().await {
            Message::Close(Some(frame)) => return frame.code.into(),
            Message::Close(None) => panic!("closed without a code"),
            _ => continue,
        }
    }
}

/// With the abuse limits on, a burst over the frame bucket is told to slow down, and a
/// flood is closed with 1008.
#[rocket::async_test]
async fn a_flood_of_frames_is_closed_with_1008() {
    let app = TestApp::required().await;
    let ann = app.signed_in("ann").await;
    let room = unique("room");
    let mut socket = open(&app, user(&ann), &room, Asked::Room, Resume::Now, 512).await;
    for _ in 0..400 {
        socket.say(json!({"type": "stop_typing"})).await;
    }
    let mut told = 0;
    let code = loop {
        match socket.next().await {
            Message::Text(text) if text.contains("too many frames") => told += 1,
            Message::Close(Some(frame)) => break u16::from(frame.code),
            _ => {}
        }
    };
    assert!(told > 0, "told to slow down before the close");
    assert_eq!(code, 1008);
}
