// The chat page: the original's jQuery poller, kept alive and made cheap. Each poll names
// the transcript it already has (If-None-Match) and asks the server to hold the request
// until something changes (wait=25), so a new line shows at once and an idle room costs a
// request every 25 s. A server that does not hold is polled every 1.5 s, as the original
// did. After a failed request it backs off and tries again instead of stopping for good.
$(function () {
  "use strict";
  var room = document.body.getAttribute("data-room") || "general";
  var url = "/api/chat/" + encodeURIComponent(room);
  var POLL_MS = 1500, MAX_BACKOFF_MS = 30000, WAIT_S = 25;
  var backoff = POLL_MS, timer = null, inFlight = false, lastText = null, etag = null;
  var $chat = $("#chat"), $status = $("#status"), $name = $("#username"), $msg = $("#msg");

  $name.val(localStorage.getItem("ferrochat.username") || "");
  $name.on("change", function () { localStorage.setItem("ferrochat.username", $name.val()); });

  function schedule(ms) { clearTimeout(timer); timer = setTimeout(load, ms); }

  function render(text) {
    if (text === lastText) return;
    var el = $chat[0];
    var atEnd = lastText === null || el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    lastText = text;
    $chat.text(text); // text only: a message is never markup
    if (atEnd) el.scrollTop = el.scrollHeight;
  }

  function load() {
    if (inFlight) return;
    inFlight = true;
    var started = Date.now();
    var held = etag !== null; // the first poll fetches the transcript at once
    $.ajax({
      url: url,
      data: held ? { wait: WAIT_S } : {},
      headers: held ? { "If-None-Match": etag } : {},
      dataType: "text",
      cache: false
    })
      .done(function (text, _, xhr) {
        backoff = POLL_MS;
        $status.text("");
        etag = xhr.getResponseHeader("ETag") || etag;
        if (xhr.status !== 304) render(text);
        // Answered at once with nothing new: this server does not hold polls.
        var quick = xhr.status === 304 && Date.now() - started < 1000;
        schedule(quick ? POLL_MS : 0);
      })
      .fail(function () {
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        $status.text("connection lost, retrying in " + Math.round(backoff / 1000) + " s");
        schedule(backoff);
      })
      .always(function () { inFlight = false; });
  }

  $("#f").on("submit", function (e) {
    e.preventDefault();
    var text = $msg.val();
    if (!$.trim(text)) return;
    localStorage.setItem("ferrochat.username", $name.val());
    $msg.val("");
    $.post(url, { username: $name.val(), msg: text })
      .done(function () { $status.text(""); })
      .fail(function (xhr) {
        $msg.val(text); // nothing was stored: give the text back
        $status.text(xhr.status ? (xhr.responseText || "not sent").trim() : "not sent: server unreachable");
      });
  });

  load();
});
