// What the page adds beside the transcript, from the ChatFlow mounts: who is online
// (heartbeats to /api/presence), who is typing (socket frames), files (/api/files) and
// unread mentions (/api/notifications, pushed live over the socket). Every part fails
// quietly: the chat itself never depends on it.
$(function () {
  "use strict";
  var fc = window.ferrochat;
  if (!fc) return;
  var room = fc.room, userId = fc.userId;
  var enc = encodeURIComponent;
  var HEARTBEAT_MS = 15000, ONLINE_MS = 10000, TYPING_SHOWN_MS = 5000, TYPING_SENT_MS = 2000;

  // --- who is online ---
  function heartbeat() {
    $.post("/api/presence/" + enc(userId) + "/heartbeat?username=" + enc(fc.name()));
  }
  function refreshOnline() {
    $.getJSON("/api/presence").done(function (users) {
      var $list = $("#online").empty();
      $.each(users, function (_, u) {
        $("<li>").text(u.username + (u.user_id === userId ? " (you)" : ""))
          .attr("data-user-id", u.user_id).appendTo($list);
      });
    });
  }
  heartbeat();
  refreshOnline();
  setInterval(heartbeat, HEARTBEAT_MS);
  setInterval(refreshOnline, ONLINE_MS);
  $("#username").on("change", heartbeat);
  $(window).on("pagehide", function () {
    if (window.fetch) fetch("/api/presence/" + enc(userId), { method: "DELETE", keepalive: true });
  });

  // --- who is typing ---
  var typists = {}; // user id -> { name, until }
  function showTyping() {
    var now = Date.now(), names = [];
    $.each(typists, function (id, t) {
      if (t.until > now) names.push(t.name); else delete typists[id];
    });
    $("#typing").text(names.length === 0 ? "" :
      names.join(", ") + (names.length === 1 ? " is typing…" : " are typing…"));
  }
  setInterval(showTyping, 1000);
  var lastTypingSent = 0, stopTimer = null;
  $("#msg").on("input", function () {
    var now = Date.now();
    if (now - lastTypingSent > TYPING_SENT_MS && fc.send({ type: "typing" })) lastTypingSent = now;
    clearTimeout(stopTimer);
    stopTimer = setTimeout(function () { fc.send({ type: "stop_typing" }); lastTypingSent = 0; }, 3000);
  });
  $("#f").on("submit", function () {
    clearTimeout(stopTimer);
    if (lastTypingSent) fc.send({ type: "stop_typing" });
    lastTypingSent = 0;
  });

  // --- files ---
  function refreshFiles() {
    $.getJSON("/api/files", { room_id: room, limit: 20 }).done(function (files) {
      var $list = $("#files").empty();
      $.each(files, function (_, f) {
        $("<li>").append($("<a>").attr("href", f.download_url).text(f.original_name))
          .append(document.createTextNode(" (" + Math.ceil(f.size_bytes / 1024) + " KB)"))
          .appendTo($list);
      });
    });
  }
  refreshFiles();
  function postJson(path, body) {
    return $.ajax({ url: path, method: "POST", contentType: "application/json", data: JSON.stringify(body) });
  }
  $("#attach").on("change", function () {
    var file = this.files && this.files[0];
    var input = this;
    if (!file) return;
    var form = new FormData();
    form.append("file", file);
    $("#status").text("uploading " + file.name + "…");
    $.ajax({
      url: "/api/files/upload?uploaded_by=" + enc(userId) + "&room_id=" + enc(room),
      method: "POST", data: form, processData: false, contentType: false
    }).done(function (f) {
      // The room may be new: create it (409 means it is there), then post the file message.
      postJson("/api/chat/rooms", { id: room }).always(function () {
        postJson("/api/chat/rooms/" + enc(room) + "/messages", {
          content: f.original_name, message_type: "file", file_url: f.download_url,
          username: fc.name(), user_id: userId
        }).done(function () { $("#status").text(""); refreshFiles(); })
          .fail(function (xhr) { $("#status").text(detail(xhr, "file message not sent")); });
      });
    }).fail(function (xhr) {
      $("#status").text(detail(xhr, "upload failed"));
    }).always(function () { input.value = ""; });
  });
  function detail(xhr, fallback) {
    return (xhr.responseJSON && xhr.responseJSON.detail) || fallback;
  }

  // --- unread mentions ---
  var unread = 0;
  function setUnread(n) {
    unread = n;
    $("#mention-count").text(n);
    $("#mentions").toggleClass("unread", n > 0);
  }
  $.getJSON("/api/notifications/" + enc(userId) + "/unread-count").done(function (r) { setUnread(r.unread_count); });
  $("#mentions").on("click", function () {
    var $list = $("#mention-list");
    if (!$list.prop("hidden")) { $list.prop("hidden", true); return; }
    $.getJSON("/api/notifications/" + enc(userId), { unread_only: true, limit: 20 }).done(function (items) {
      $list.empty();
      if (!items.length) $("<li>").text("no unread mentions").appendTo($list);
      $.each(items, function (_, n) { $("<li>").text(n.title + ": " + n.body).appendTo($list); });
      $list.prop("hidden", false);
      $.ajax({ url: "/api/notifications/" + enc(userId) + "/read-all", method: "PATCH" })
        .done(function () { setUnread(0); });
    });
  });

  // --- live, from the socket ---
  $(document).on("ferrochat:event", function (_, event) {
    if (event.type === "typing" && event.user_id !== userId) {
      typists[event.user_id] = { name: event.username, until: Date.now() + TYPING_SHOWN_MS };
      showTyping();
    } else if (event.type === "stop_typing" || event.type === "message") {
      delete typists[event.user_id];
      showTyping();
      if (event.type === "message" && event.message_type === "file") refreshFiles();
    } else if (event.type === "user_joined" || event.type === "user_left") {
      refreshOnline();
    } else if (event.type === "notification") {
      setUnread(unread + 1);
      $("#status").text(event.title);
    }
  });
});
