// The chat page: the original's jQuery poller, kept alive. It polls every 1.5 s, and after
// a failed request it backs off and tries again instead of stopping for good.
$(function () {
  "use strict";
  var room = document.body.getAttribute("data-room") || "general";
  var url = "/api/chat/" + encodeURIComponent(room);
  var POLL_MS = 1500, MAX_BACKOFF_MS = 30000;
  var backoff = POLL_MS, timer = null, inFlight = false, lastText = null;
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
    $.ajax({ url: url, dataType: "text", cache: false })
      .done(function (text) {
        backoff = POLL_MS;
        $status.text("");
        render(text);
        schedule(POLL_MS);
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
      .done(function () { $status.text(""); schedule(0); })
      .fail(function (xhr) {
        $msg.val(text); // nothing was stored: give the text back
        $status.text(xhr.status ? (xhr.responseText || "not sent").trim() : "not sent: server unreachable");
      });
  });

  load();
});
