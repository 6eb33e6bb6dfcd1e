// The chat page: the original's jQuery poller, kept alive and made live.
//
// Reading: the transcript is fetched once; then a WebSocket tells the page the moment a
// message is committed, and the page fetches just the new lines (?after=<last id>), so
// every line is the server's own and none is shown twice. Without a WebSocket (a proxy
// that does not pass upgrades, a room not yet created) the page long-polls: each poll
// names the transcript it has (If-None-Match) and the server holds it until something
// changes (wait=25). A server that does not hold is polled every 1.5 s, as the original
// was. Failures back off and retry; nothing stops for good.
// Sending: the original's form POST, so the name can change from one message to the next.
$(function () {
  "use strict";
  var room = document.body.getAttribute("data-room") || "general";
  var url = "/api/chat/" + encodeURIComponent(room);
  var POLL_MS = 1500, MAX_BACKOFF_MS = 30000, WAIT_S = 25;
  var $chat = $("#chat"), $status = $("#status"), $name = $("#username"), $msg = $("#msg");
  var text = null, lastId = null, etag = null;
  var pollTimer = null, polling = false, pollBackoff = POLL_MS;
  var socket = null, socketBackoff = 1000, fetchingNew = false, moreToFetch = false;

  // Signed in, the page is the user's (the server wrote who into it); otherwise the name
  // and id are this browser's own choice, as in the original.
  var signedIn = document.body.getAttribute("data-user-id");
  var userId = signedIn || localStorage.getItem("ferrochat.user_id");
  if (!userId) {
    userId = "web-" + Math.random().toString(36).slice(2, 12);
    localStorage.setItem("ferrochat.user_id", userId);
  }
  if (signedIn) {
    $name.val(document.body.getAttribute("data-username")).prop("readonly", true);
    $("#signout").on("click", function () {
      $.post("/api/auth/logout").always(function () { location.reload(); });
    });
  } else {
    $name.val(localStorage.getItem("ferrochat.username") || "");
    $name.on("change", function () { localStorage.setItem("ferrochat.username", $name.val()); });
  }
  window.ferrochat = { // for social.js, tests and the curious
    mode: "starting",
    room: room,
    userId: userId,
    name: function () { return $.trim($name.val()) || "Anonymous"; },
    // A frame for the socket, if one is open; false otherwise.
    send: function (frame) {
      if (!socket || socket.readyState !== 1) return false;
      socket.send(JSON.stringify(frame));
      return true;
    }
  };

  function show(newText) {
    if (newText === text) return;
    var el = $chat[0];
    var atEnd = text === null || el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    text = newText;
    $chat.text(text); // text only: a message is never markup
    if (atEnd) el.scrollTop = el.scrollHeight;
  }

  function remember(xhr) {
    etag = xhr.getResponseHeader("ETag") || etag;
    var id = parseInt(xhr.getResponseHeader("X-Last-Message-Id"), 10);
    if (!isNaN(id)) lastId = id;
  }

  // --- long-poll (and plain polling), used while there is no WebSocket ---
  function schedulePoll(ms) { clearTimeout(pollTimer); pollTimer = setTimeout(poll, ms); }

  function poll() {
    if (polling || (socket && socket.readyState === 1)) return;
    polling = true;
    var started = Date.now(), held = etag !== null;
    $.ajax({
      url: url,
      data: held ? { wait: WAIT_S } : {},
      headers: held ? { "If-None-Match": etag } : {},
      dataType: "text",
      cache: false
    })
      .done(function (body, _, xhr) {
        pollBackoff = POLL_MS;
        $status.text("");
        // An answer older than what the socket already brought: keep the newer page.
        var id = parseInt(xhr.getResponseHeader("X-Last-Message-Id"), 10);
        if (xhr.status !== 304 && !(lastId !== null && id < lastId)) {
          remember(xhr);
          show(body);
        }
        var quick = xhr.status === 304 && Date.now() - started < 1000;
        schedulePoll(quick ? POLL_MS : 0);
      })
      .fail(function () {
        pollBackoff = Math.min(pollBackoff * 2, MAX_BACKOFF_MS);
        $status.text("connection lost, retrying in " + Math.round(pollBackoff / 1000) + " s");
        schedulePoll(pollBackoff);
      })
      .always(function () { polling = false; });
  }

  // --- WebSocket: a signal that there are new lines to fetch ---
  function fetchNew() {
    if (fetchingNew) { moreToFetch = true; return; }
    fetchingNew = true;
    moreToFetch = false;
    var from = lastId;
    $.ajax({ url: url, data: { after: from }, dataType: "text", cache: false })
      .done(function (lines, _, xhr) {
        // A poll answered meanwhile and the page moved on: appending would repeat lines.
        if (lastId !== from) { moreToFetch = true; return; }
        remember(xhr);
        if (lines) show(text ? text + "\n" + lines : lines);
      })
      .always(function () {
        fetchingNew = false;
        if (moreToFetch) fetchNew();
      });
  }

  function connect() {
    if (!window.WebSocket || lastId === null) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/ws/" + encodeURIComponent(room) + "/" +
      encodeURIComponent(userId) + "?username=" + encodeURIComponent($name.val() || "Anonymous") +
      "&since=" + lastId);
    socket = ws;
    ws.onopen = function () {
      socketBackoff = 1000;
      window.ferrochat.mode = "websocket";
      $status.text("");
      fetchNew(); // anything committed between the last poll and the socket
    };
    ws.onmessage = function (e) {
      var event;
      try { event = JSON.parse(e.data); } catch (_) { return; }
      if (event.type === "message" && (lastId === null || event.id > lastId)) fetchNew();
      $(document).trigger("ferrochat:event", [event]); // typing, mentions, files: social.js
    };
    ws.onclose = function () {
      if (socket !== ws) return;
      socket = null;
      window.ferrochat.mode = "polling";
      schedulePoll(0); // keep up meanwhile
      socketBackoff = Math.min(socketBackoff * 2, MAX_BACKOFF_MS);
      setTimeout(connect, socketBackoff);
    };
  }

  $("#f").on("submit", function (e) {
    e.preventDefault();
    var msg = $msg.val();
    if (!$.trim(msg)) return;
    localStorage.setItem("ferrochat.username", $name.val());
    $msg.val("");
    $.post(url, { username: $name.val(), msg: msg })
      .done(function () { $status.text(""); })
      .fail(function (xhr) {
        $msg.val(msg); // nothing was stored: give the text back
        $status.text(xhr.status ? (xhr.responseText || "not sent").trim() : "not sent: server unreachable");
      });
  });

  // First the whole transcript, then live updates.
  $.ajax({ url: url, dataType: "text", cache: false })
    .done(function (body, _, xhr) { remember(xhr); show(body); connect(); })
    .always(function () { window.ferrochat.mode = "polling"; schedulePoll(0); });
});
