// The chat page: rooms, messages, reactions, replies, edits, search, files and read state,
// over the JSON API and one WebSocket for the room on screen.
//
// Data flows one way: the server's answers and socket frames change `state`, and the
// render functions draw from it. Every frame that changes a room carries `seq`; the page
// keeps the last one it saw and reconnects with it, so an edit, a reaction or a deletion
// made while it was away is replayed, never lost. Without a socket it asks
// /api/chat/rooms/<id>/changes for the same frames. Text from anyone is only ever a text
// node: no message, name or snippet is parsed as markup.
$(function () {
  "use strict";
  var enc = encodeURIComponent;
  var PAGE = 100, MAX_WINDOW = 300, GROUP_MS = 5 * 60 * 1000;
  var HEARTBEAT_MS = 15000, UNREAD_MS = 10000, TYPING_SHOWN_MS = 6000, TYPING_SENT_MS = 2500;
  var SEQ_PER_ID = 1048576; // a message's seq is its id x 2^20 (domain/seq.rs)
  var COMMON_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "👀", "✅"];
  var body = document.body;

  // --- who is here -------------------------------------------------------------------
  var signedIn = !!body.getAttribute("data-user-id");
  var myId = body.getAttribute("data-user-id") || localStorage.getItem("ferrochat.user_id");
  if (!myId) {
    myId = "web-" + Math.random().toString(36).slice(2, 12);
    localStorage.setItem("ferrochat.user_id", myId);
  }
  var $name = $("#username");
  if (!signedIn) {
    $name.val(localStorage.getItem("ferrochat.username") || "");
    $name.on("change", function () {
      localStorage.setItem("ferrochat.username", $.trim($name.val()));
      heartbeat();
    });
  }
  function myName() {
    return signedIn ? body.getAttribute("data-username") : ($.trim($name.val()) || "Anonymous");
  }
  // Open mode: the reader names itself, as the API asks of a guest.
  function asMe(path) {
    if (signedIn) return path;
    return path + (path.indexOf("?") < 0 ? "?" : "&") + "user_id=" + enc(myId);
  }

  // --- state -------------------------------------------------------------------------
  var state = {
    room: body.getAttribute("data-room") || "general",
    rooms: {},          // id -> room, as /api/chat/rooms answers
    unread: {},         // id -> {unread, mentions, last_read_id, capped}
    people: {},         // user id -> name, from messages and presence
    online: [],
    msgs: [],           // the window of the room's history on screen, oldest first
    byId: {},
    hasOlder: false,    // the server holds older messages than the window
    hasNewer: false,    // ... and newer ones (the window was opened at an older message)
    newWhileAway: 0,
    readMark: 0,        // the mark when the room was opened: where "new messages" starts
    lastSeq: 0,
    exists: false,      // the room has a row (a name nobody wrote in yet has none)
    replyTo: null,
    generation: 0       // bumped on every room switch: answers for an older room are dropped
  };
  window.ferrochat = { mode: "starting", state: state, userId: myId }; // for tests and the curious

  // --- the server --------------------------------------------------------------------
  var leaving = false; // signing out or reloading: nothing more is asked of the server
  function api(method, path, data) {
    if (leaving) return $.Deferred().promise(); // the page is going: nothing more to ask
    return $.ajax({
      url: path, method: method, dataType: "json", cache: false,
      contentType: data === undefined ? undefined : "application/json",
      data: data === undefined ? undefined : JSON.stringify(data)
    });
  }
  function reason(xhr, fallback) {
    if (!xhr || !xhr.status) return fallback + ": the server does not answer";
    return (xhr.responseJSON && xhr.responseJSON.detail) || $.trim(xhr.responseText || "") || fallback;
  }
  var statusTimer = null;
  function say(text, sticky) {
    clearTimeout(statusTimer);
    $("#status").text(text).toggleClass("shown", !!text);
    if (text && !sticky) statusTimer = setTimeout(function () { say(""); }, 5000);
  }

  // --- small helpers -----------------------------------------------------------------
  function when(m) {
    var s = m.created_at || m.timestamp;
    if (s && !/[zZ]|[+-]\d\d:?\d\d$/.test(s)) s += "Z";
    return new Date(s);
  }
  function sameDay(a, b) { return a.toDateString() === b.toDateString(); }
  function exact(d) { return d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }); }
  function relative(d) {
    var s = (Date.now() - d.getTime()) / 1000;
    if (s < 60) return "just now";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (sameDay(d, new Date())) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }
  function dayLabel(d) {
    var today = new Date(), yesterday = new Date(Date.now() - 86400000);
    if (sameDay(d, today)) return "Today";
    if (sameDay(d, yesterday)) return "Yesterday";
    return d.toLocaleDateString([], { weekday: "long", month: "long", day: "numeric", year: "numeric" });
  }
  function initials(name) {
    var words = $.trim(name || "?").split(/\s+/);
    var s = words.length > 1 ? words[0].charAt(0) + words[1].charAt(0) : words[0].slice(0, 2);
    return s.toUpperCase();
  }
  function hue(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) % 360;
    return h;
  }
  function isAccount(id) { return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id || ""); }
  function mine(m) { return signedIn && m.user_id === myId; }
  function roomLabel(room) {
    if (room.visibility !== "direct") return room.name || room.id;
    // Named "<one>, <other>" by the two names (ids, for a conversation made before names).
    var two = (room.name || "").split(", ");
    var other = two[0] === myId || two[0] === myName() ? two[1] : two[0];
    return state.people[other] || (isAccount(other) ? "direct conversation" : other || room.id);
  }
  function atBottom() {
    var el = $("#messages")[0];
    return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
  }
  function scrollToBottom() { var el = $("#messages")[0]; el.scrollTop = el.scrollHeight; }
  function svgIcon(d) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
    return svg;
  }

  // Text with links and mentions: text nodes and elements only, never parsed markup.
  function richText(text) {
    var frag = document.createDocumentFragment();
    var re = /(https?:\/\/[^\s<>"']+)|(@[\w.\-]+)/g, last = 0, match;
    var me = myName().toLowerCase();
    while ((match = re.exec(text)) !== null) {
      var token = match[0];
      if (match[1]) {
        var trail = /[.,;:!?)\]]+$/.exec(token);
        if (trail) token = token.slice(0, -trail[0].length);
      }
      frag.appendChild(document.createTextNode(text.slice(last, match.index)));
      if (match[1]) {
        var a = document.createElement("a");
        a.href = token; a.rel = "noopener noreferrer"; a.target = "_blank";
        a.textContent = token;
        frag.appendChild(a);
      } else {
        var span = document.createElement(token.slice(1).toLowerCase() === me ? "mark" : "span");
        span.className = "mention";
        span.textContent = token;
        frag.appendChild(span);
      }
      last = match.index + token.length;
      re.lastIndex = last;
    }
    frag.appendChild(document.createTextNode(text.slice(last)));
    return frag;
  }

  // A search snippet: the server's escaped HTML with <mark>, turned back into text nodes
  // and marks without ever handing it to the HTML parser.
  function snippetNodes(snippet) {
    var frag = document.createDocumentFragment();
    var parts = String(snippet || "").split(/<\/?mark>/);
    $.each(parts, function (i, part) {
      var text = part.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, "\"")
        .replace(/&#39;/g, "'").replace(/&#x27;/g, "'").replace(/&amp;/g, "&");
      if (i % 2) { var mark = document.createElement("mark"); mark.textContent = text; frag.appendChild(mark); }
      else frag.appendChild(document.createTextNode(text));
    });
    return frag;
  }

  // --- files -------------------------------------------------------------------------
  var fileMeta = {}; // id -> a promise of the file's metadata
  function fileId(url) {
    var m = /^\/api\/files\/([^/?#]+)\/download$/.exec(url || "");
    return m ? m[1] : null;
  }
  function metaOf(id) {
    if (!fileMeta[id]) fileMeta[id] = api("GET", "/api/files/" + enc(id));
    return fileMeta[id];
  }
  function size(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1048576) return Math.round(bytes / 1024) + " KB";
    return (bytes / 1048576).toFixed(1) + " MB";
  }
  function fileChip(name, href, bytes) {
    var a = $("<a class='file-chip' rel='noopener noreferrer' download>").attr("href", href);
    a.append(svgIcon("M6 2h9l5 5v15H6zM14 2v6h6"));
    a.append($("<span class='file-name'>").text(name));
    if (bytes !== undefined) a.append($("<span class='muted'>").text(size(bytes)));
    return a;
  }
  function fileBlock(m) {
    var $box = $("<div class='file'>");
    var id = fileId(m.file_url), name = m.content || "file";
    var looksImage = /\.(png|jpe?g|gif|webp)$/i.test(name);
    if (!id) {
      // Another client's link: shown as a link to where it points, if it is the web.
      if (/^https?:\/\//.test(m.file_url || "")) $box.append(fileChip(name, m.file_url));
      else $box.text(name);
      return $box;
    }
    if (looksImage) $box.addClass("thumb-pending");
    metaOf(id).done(function (f) {
      $box.removeClass("thumb-pending").empty();
      if (f.thumbnail_url) {
        var $img = $("<img loading='lazy'>").attr({
          src: f.thumbnail_url, alt: f.original_name,
          width: f.thumbnail_width || undefined, height: f.thumbnail_height || undefined
        });
        // A link to the whole image (named by the thumbnail's alt text), opened in place.
        $("<a class='thumb'>").attr("href", f.download_url)
          .append($img).on("click", function (e) { e.preventDefault(); openImage(f); }).appendTo($box);
        $box.append($("<span class='muted file-size'>").text(size(f.size_bytes)));
      } else {
        $box.append(fileChip(f.original_name, f.download_url, f.size_bytes));
      }
    }).fail(function () {
      $box.removeClass("thumb-pending").empty().append(fileChip(name, m.file_url));
    });
    return $box;
  }
  function openImage(f) {
    $("#image-full").attr({ src: f.download_url, alt: f.original_name });
    $("#image-download").attr("href", f.download_url).attr("download", f.original_name);
    $("#image-dialog").attr("aria-label", f.original_name)[0].showModal();
  }

  function upload(file) {
    if (!file) return;
    var form = new FormData();
    form.append("file", file);
    say("Uploading " + file.name + "…", true);
    $.ajax({
      url: "/api/files/upload?uploaded_by=" + enc(myId) + "&room_id=" + enc(state.room),
      method: "POST", data: form, processData: false, contentType: false, dataType: "json"
    }).done(function (f) {
      fileMeta[f.id] = $.Deferred().resolve(f).promise();
      state.exists = true; // an upload makes its room
      postMessage({ content: f.original_name, message_type: "file", file_url: f.download_url })
        .done(function () { say(""); });
    }).fail(function (xhr) { say(reason(xhr, "upload failed")); });
  }

  // --- messages on screen ------------------------------------------------------------
  var $list = $("#message-list");

  function reactionsEl(m) {
    var $r = $("<div class='reactions'>");
    $.each(m.reactions || [], function (_, r) {
      if (!r.count) return;
      $("<button type='button' class='reaction'>")
        .attr({ "aria-pressed": r.me ? "true" : "false", "data-emoji": r.emoji,
          "aria-label": r.emoji + " " + r.count + (r.me ? ", yours: take it back" : ", add yours") })
        .append($("<span class='emoji'>").text(r.emoji), " ", $("<span class='count'>").text(r.count))
        .appendTo($r);
    });
    return $r;
  }

  function messageEl(m) {
    var d = when(m), author = m.username || "Anonymous";
    var $a = $("<article class='msg'>").attr({
      id: "m-" + m.id, "data-id": m.id, "data-user": m.user_id || author, tabindex: "-1",
      "aria-label": author + ", " + exact(d)
    });
    if (mine(m)) $a.addClass("mine");
    $("<div class='avatar' aria-hidden='true'>").text(initials(author))
      .css("background-color", "hsl(" + hue(author) + " 45% 30%)").appendTo($a);
    var $body = $("<div class='body'>").appendTo($a);
    $("<div class='meta'>").append(
      $("<span class='author'>").text(author), " ",
      m.bot ? $("<span class='bot-tag'>").text("bot") : null, m.bot ? " " : null,
      $("<time>").attr({ datetime: d.toISOString(), title: exact(d) }).text(relative(d)),
      m.edited_at ? $("<span class='edited muted'>").text(" (edited)") : null
    ).appendTo($body);
    if (m.reply_to) {
      var p = m.reply_preview;
      $("<button type='button' class='reply-to'>")
        .attr({ "data-target": m.reply_to, "aria-label": p ? "In reply to " + p.username + ": " + p.content : "In reply to a deleted message" })
        .append(svgIcon("M9 14L4 9l5-5M4 9h10a6 6 0 0 1 6 6v4"),
          p ? $("<span>").append($("<b>").text(p.username), " ", document.createTextNode(p.content))
            : $("<span class='muted'>").text("a deleted message"))
        .appendTo($body);
    }
    if (m.message_type === "file") $body.append(fileBlock(m));
    else $("<div class='text'>").append(richText(m.content || "")).appendTo($body);
    $body.append(reactionsEl(m));
    var $tools = $("<div class='actions' role='toolbar'>").attr("aria-label", "Actions on " + author + "'s message");
    $tools.append(
      $("<button type='button' class='act-reply'>").text("Reply"),
      $("<button type='button' class='act-react' aria-haspopup='dialog'>").text("React"));
    if (mine(m) && m.message_type !== "file") $tools.append($("<button type='button' class='act-edit'>").text("Edit"));
    if (mine(m) || (signedIn && state.rooms[state.room] && state.rooms[state.room].owner_id === myId)) {
      $tools.append($("<button type='button' class='act-delete'>").text("Delete"));
    }
    $tools.append($("<button type='button' class='act-link'>").text("Copy link"));
    $a.append($tools);
    return $a;
  }

  // Day separators, author groups and the "new messages" line, from the articles as they
  // stand: run after anything but an append at the end.
  function relayout() {
    $list.children(".day, .new-divider").remove();
    var prev = null, divided = false;
    $list.children("article").each(function () {
      var m = state.byId[this.getAttribute("data-id")];
      if (!m) return;
      var d = when(m), $el = $(this);
      if (!prev || !sameDay(when(prev), d)) $el.before(daySeparator(d));
      if (!divided && state.readMark && m.id > state.readMark && !mine(m) && m.user_id !== myId && prev) {
        $el.before(newDivider());
        divided = true;
      }
      $el.toggleClass("grouped", groups(prev, m));
      prev = m;
    });
  }
  function groups(prev, m) {
    return !!prev && prev.user_id === m.user_id && prev.username === m.username && !m.reply_to &&
      when(m) - when(prev) < GROUP_MS && sameDay(when(prev), when(m));
  }
  function daySeparator(d) {
    return $("<div class='day' role='separator'>").attr("aria-label", dayLabel(d)).append($("<span>").text(dayLabel(d)));
  }
  function newDivider() {
    return $("<div class='new-divider' role='separator' aria-label='New messages'>").append($("<span>").text("New messages"));
  }

  function index(m) {
    state.byId[m.id] = m;
    state.people[m.user_id] = m.username;
  }

  function renderWindow() {
    $list.empty();
    var frag = document.createDocumentFragment();
    $.each(state.msgs, function (_, m) { frag.appendChild(messageEl(m)[0]); });
    $list[0].appendChild(frag);
    relayout();
    $("#history-start").prop("hidden", state.hasOlder);
    showJump();
  }

  // A message at the end: one element added, nothing else drawn again.
  function appendMessage(m) {
    var stick = atBottom();
    var prev = state.msgs[state.msgs.length - 1];
    state.msgs.push(m);
    index(m);
    var $el = messageEl(m);
    if (!prev || !sameDay(when(prev), when(m))) $list.append(daySeparator(when(m)));
    $el.toggleClass("grouped", groups(prev, m));
    $list.append($el);
    if (state.msgs.length > MAX_WINDOW && stick) trimTop(state.msgs.length - MAX_WINDOW);
    if (stick) scrollToBottom();
    else if (!mine(m)) { state.newWhileAway++; }
    showJump();
  }

  function trimTop(n) {
    var gone = state.msgs.splice(0, n);
    $.each(gone, function (_, m) { $("#m-" + m.id).remove(); delete state.byId[m.id]; });
    state.hasOlder = true;
    relayout();
    $("#history-start").prop("hidden", true);
  }

  function replaceMessage(m) {
    var i = state.msgs.findIndex(function (x) { return x.id === m.id; });
    if (i < 0) return;
    state.msgs[i] = m;
    index(m);
    // The article stays the same element (what a screen reader or a test holds on to);
    // only what is inside it is drawn again.
    var $old = $("#m-" + m.id), focused = $old.find(":focus").length > 0;
    var kept = ["grouped", "touched", "highlight"].filter(function (c) { return $old.hasClass(c); });
    var $new = messageEl(m);
    $old.attr({ "aria-label": $new.attr("aria-label"), "class": $new.attr("class") })
      .addClass(kept.join(" "))
      .empty().append($new.contents());
    if (focused) $old.focus();
  }

  function removeMessage(id) {
    var i = state.msgs.findIndex(function (x) { return x.id === id; });
    if (i < 0) return;
    state.msgs.splice(i, 1);
    delete state.byId[id];
    var $el = $("#m-" + id);
    var hadFocus = $el.find(":focus").length > 0 || $el.is(":focus");
    $el.remove();
    relayout();
    if (hadFocus) $("#msg").focus();
  }

  function showJump() {
    var away = state.hasNewer || !atBottom();
    var $b = $("#jump-latest").prop("hidden", !away);
    $b.text(state.newWhileAway ? "Jump to latest (" + state.newWhileAway + " new)" : "Jump to latest");
    if (!away) state.newWhileAway = 0;
  }

  // --- history -----------------------------------------------------------------------
  function readHistory(params) {
    return api("GET", asMe("/api/chat/rooms/" + enc(state.room) + "/messages?" + $.param(params)));
  }

  // The newest page, and everything that follows from it.
  function loadLatest() {
    var gen = state.generation;
    var got = state.exists ? readHistory({ limit: PAGE }) : $.Deferred().resolve([]).promise();
    return got.then(function (msgs) {
      if (gen !== state.generation) return;
      state.msgs = msgs;
      state.byId = {};
      $.each(msgs, function (_, m) { index(m); });
      state.hasOlder = msgs.length === PAGE;
      state.hasNewer = false;
      state.newWhileAway = 0;
      var newest = msgs.length ? msgs[msgs.length - 1].id : 0;
      state.lastSeq = Math.max(state.lastSeq, newest * SEQ_PER_ID);
      renderWindow();
      // The first room's messages on screen: what bench/page and the browser tests read.
      if (!performance.getEntriesByName("ferrochat:messages-shown").length) {
        performance.mark("ferrochat:messages-shown", { detail: { messages: msgs.length } });
      }
      var $divider = $list.children(".new-divider");
      if ($divider.length) $divider[0].scrollIntoView({ block: "center" });
      else scrollToBottom();
      maybeMarkRead();
    }, function (xhr) {
      if (gen !== state.generation) return;
      if (xhr.status === 404) { state.exists = false; state.msgs = []; renderWindow(); return; }
      say(reason(xhr, "history not loaded"));
    });
  }

  var loadingOlder = false, loadingNewer = false;
  function loadOlder() {
    if (loadingOlder || !state.hasOlder || !state.msgs.length) return;
    loadingOlder = true;
    var gen = state.generation, el = $("#messages")[0];
    readHistory({ limit: PAGE, before: state.msgs[0].id }).done(function (older) {
      if (gen !== state.generation) return;
      var before = el.scrollHeight;
      state.hasOlder = older.length === PAGE;
      var frag = document.createDocumentFragment();
      $.each(older, function (_, m) { index(m); frag.appendChild(messageEl(m)[0]); });
      state.msgs = older.concat(state.msgs);
      $list[0].insertBefore(frag, $list[0].firstChild);
      // The window keeps a bound: what falls off the end is fetched again on the way back.
      var extra = state.msgs.length - MAX_WINDOW;
      if (extra > 0) {
        var gone = state.msgs.splice(state.msgs.length - extra, extra);
        $.each(gone, function (_, m) { $("#m-" + m.id).remove(); delete state.byId[m.id]; });
        state.hasNewer = true;
      }
      relayout();
      el.scrollTop += el.scrollHeight - before;
      $("#history-start").prop("hidden", state.hasOlder);
      showJump();
    }).always(function () { loadingOlder = false; });
  }

  function loadNewer() {
    if (loadingNewer || !state.hasNewer || !state.msgs.length) return;
    loadingNewer = true;
    var gen = state.generation, el = $("#messages")[0];
    readHistory({ limit: PAGE, after: state.msgs[state.msgs.length - 1].id }).done(function (newer) {
      if (gen !== state.generation) return;
      state.hasNewer = newer.length === PAGE;
      var fromBottom = el.scrollHeight - el.scrollTop;
      var frag = document.createDocumentFragment();
      $.each(newer, function (_, m) {
        if (state.byId[m.id]) return;
        index(m); state.msgs.push(m); frag.appendChild(messageEl(m)[0]);
      });
      $list[0].appendChild(frag);
      var extra = state.msgs.length - MAX_WINDOW;
      if (extra > 0) {
        var gone = state.msgs.splice(0, extra);
        $.each(gone, function (_, m) { $("#m-" + m.id).remove(); delete state.byId[m.id]; });
        state.hasOlder = true;
        $("#history-start").prop("hidden", true);
      }
      relayout();
      el.scrollTop = el.scrollHeight - fromBottom;
      if (!state.hasNewer) state.newWhileAway = 0;
      showJump();
      maybeMarkRead();
    }).always(function () { loadingNewer = false; });
  }

  // The window around one message (a search hit, a link, a reply's original).
  function openAt(id) {
    if (state.byId[id]) { highlight(id); return; }
    var gen = state.generation;
    $.when(readHistory({ limit: 50, before: id + 1 }), readHistory({ limit: 50, after: id }))
      .done(function (upTo, after) {
        if (gen !== state.generation) return;
        upTo = upTo[0]; after = after[0];
        state.msgs = upTo.concat(after);
        state.byId = {};
        $.each(state.msgs, function (_, m) { index(m); });
        state.hasOlder = upTo.length === 50;
        state.hasNewer = after.length === 50;
        renderWindow();
        highlight(id);
      }).fail(function (xhr) { say(reason(xhr, "that message could not be opened")); });
  }
  function highlight(id) {
    var $el = $("#m-" + id);
    if (!$el.length) { say("That message is no longer there."); return; }
    $el[0].scrollIntoView({ block: "center" });
    $el.addClass("highlight").focus();
    setTimeout(function () { $el.removeClass("highlight"); }, 2500);
  }

  // --- frames: the socket's, or the same from /changes -------------------------------
  function apply(frame) {
    if (frame.seq) state.lastSeq = Math.max(state.lastSeq, frame.seq);
    var here = !frame.room_id || frame.room_id === state.room;
    switch (frame.type) {
      case "message":
        if (!here) return;
        state.exists = true;
        state.people[frame.user_id] = frame.username;
        stopTyping(frame.user_id);
        if (state.byId[frame.id]) return;
        if (state.hasNewer) { if (!mine(frame)) state.newWhileAway++; showJump(); return; }
        var last = state.msgs[state.msgs.length - 1];
        if (last && frame.id < last.id) return; // already in the history read
        frame.created_at = frame.created_at || frame.timestamp;
        appendMessage(frame);
        maybeMarkRead();
        return;
      case "message_updated":
        if (here && state.byId[frame.id]) {
          frame.created_at = frame.created_at || frame.timestamp;
          var was = state.byId[frame.id];
          frame.reply_to = frame.reply_to || was.reply_to;
          frame.reply_preview = frame.reply_preview || was.reply_preview;
          replaceMessage(frame);
        }
        return;
      case "reaction_added":
      case "reaction_removed":
        var m = state.byId[frame.message_id];
        if (!here || !m) return;
        var rs = (m.reactions || []).slice(), found = false;
        rs = $.map(rs, function (r) {
          if (r.emoji !== frame.emoji) return r;
          found = true;
          var me = frame.user_id === myId ? frame.type === "reaction_added" : r.me;
          return frame.count > 0 ? { emoji: r.emoji, count: frame.count, me: me } : null;
        });
        if (!found && frame.count > 0) rs.push({ emoji: frame.emoji, count: frame.count, me: frame.user_id === myId });
        m = $.extend({}, m, { reactions: rs });
        replaceMessage(m);
        return;
      case "message_deleted":
        if (here) removeMessage(frame.id);
        return;
      case "room_deleted":
        if (here) { say("This room was deleted.", true); delete state.rooms[state.room]; drawRooms(); }
        return;
      case "resync":
        if (here) loadLatest();
        return;
      case "typing":
        if (here && frame.user_id !== myId) {
          typists[frame.user_id] = { name: frame.username, until: Date.now() + TYPING_SHOWN_MS };
          drawTyping();
        }
        return;
      case "stop_typing":
        stopTyping(frame.user_id);
        return;
      case "user_joined":
      case "user_left":
        refreshOnline();
        return;
      case "read":
      case "notification":
        refreshUnreadSoon();
        return;
      case "error":
        say(frame.detail || "the server refused that");
        return;
    }
  }

  // --- the socket --------------------------------------------------------------------
  var socket = null, socketBackoff = 1000, reconnectTimer = null, pollTimer = null, offlineTimer = null;
  function connect() {
    clearTimeout(reconnectTimer);
    if (leaving) return;
    if (!window.WebSocket) { pollChanges(); return; }
    var gen = state.generation;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/ws/" + enc(state.room) + "/" + enc(myId) +
      "?username=" + enc(myName()) + "&seq=" + state.lastSeq);
    socket = ws;
    ws.onopen = function () {
      if (gen !== state.generation) return;
      socketBackoff = 1000;
      window.ferrochat.mode = "websocket";
      clearTimeout(pollTimer);
      clearTimeout(offlineTimer);
      if ($("#status").hasClass("offline")) { say(""); $("#status").removeClass("offline"); }
    };
    ws.onmessage = function (e) {
      if (gen !== state.generation) return;
      var frame;
      try { frame = JSON.parse(e.data); } catch (_) { return; }
      apply(frame);
    };
    ws.onclose = function (e) {
      if (socket !== ws || gen !== state.generation) return;
      // 4001: this session ended (signed out elsewhere, the password changed): the page
      // starts again as whoever the browser now is.
      if (e.code === 4001) { leaving = true; socket = null; location.reload(); return; }
      socket = null;
      window.ferrochat.mode = "polling";
      // Said only when it lasts: a restart behind a load balancer takes a second.
      clearTimeout(offlineTimer);
      offlineTimer = setTimeout(function () {
        $("#status").addClass("offline");
        say("Reconnecting…", true);
      }, 3000);
      pollChanges();
      socketBackoff = Math.min(socketBackoff * 2, 30000);
      reconnectTimer = setTimeout(connect, socketBackoff * (0.75 + Math.random() / 2));
    };
  }
  function disconnect() {
    clearTimeout(reconnectTimer);
    clearTimeout(pollTimer);
    if (socket) { var ws = socket; socket = null; ws.close(1000); }
  }
  function send(frame) {
    if (!socket || socket.readyState !== 1) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }
  // Without a socket, the same frames by HTTP, every few seconds.
  function pollChanges() {
    clearTimeout(pollTimer);
    if (leaving || (socket && socket.readyState === 1)) return;
    var gen = state.generation;
    if (!state.exists) { pollTimer = setTimeout(pollChanges, 3000); return; }
    api("GET", "/api/chat/rooms/" + enc(state.room) + "/changes?limit=500&after=" + state.lastSeq)
      .done(function (frames) {
        if (gen !== state.generation) return;
        $.each(frames, function (_, f) { apply(f); });
        if (!$("#status").hasClass("offline")) return;
        say(""); $("#status").removeClass("offline");
      })
      .always(function () {
        if (gen === state.generation && !(socket && socket.readyState === 1)) pollTimer = setTimeout(pollChanges, 3000);
      });
  }

  // --- rooms, unread marks -----------------------------------------------------------
  function refreshRooms() {
    return api("GET", "/api/chat/rooms").done(function (rooms) {
      state.rooms = {};
      $.each(rooms, function (_, r) { state.rooms[r.id] = r; });
      if (state.rooms[state.room]) state.exists = true;
      drawRooms();
      drawHeader();
    });
  }
  function refreshUnread() {
    return api("GET", asMe("/api/chat/unread")).done(function (list) {
      state.unread = {};
      var unknown = false;
      $.each(list, function (_, u) { state.unread[u.room_id] = u; unknown = unknown || !state.rooms[u.room_id]; });
      // Someone started a conversation with this user, or added them to a room.
      if (unknown) refreshRooms();
      drawRooms();
    });
  }
  var unreadSoon = null;
  function refreshUnreadSoon() { clearTimeout(unreadSoon); unreadSoon = setTimeout(refreshUnread, 300); }

  function roomItem(r) {
    var u = state.unread[r.id] || {}, label = roomLabel(r);
    var count = r.id === state.room && atBottom() && !state.hasNewer ? 0 : (u.unread || 0);
    var name = label + (count ? ", " + count + (u.capped ? "+" : "") + " unread" : "") +
      (u.mentions && count ? ", " + u.mentions + (u.mentions === 1 ? " mention" : " mentions") : "");
    var $a = $("<a class='room-link'>").attr({ href: "/" + enc(r.id), "data-room": r.id, "aria-label": name });
    if (r.id === state.room) $a.attr("aria-current", "page");
    if (r.visibility === "private") $a.append(svgIcon("M7 11V8a5 5 0 0 1 10 0v3M5 11h14v10H5z"));
    else if (r.visibility !== "direct") $a.append($("<span class='hash' aria-hidden='true'>").text("#"));
    $a.append($("<span class='room-name'>").text(label));
    if (count) {
      $a.addClass("has-unread");
      if (u.mentions) $a.append($("<span class='badge mention-badge' aria-hidden='true'>").text("@" + u.mentions));
      $a.append($("<span class='badge' aria-hidden='true'>").text(count + (u.capped ? "+" : "")));
    }
    return $("<li>").append($a);
  }
  var drawnRooms = null;
  function drawRooms() {
    var rooms = $.map(state.rooms, function (r) { return r; });
    if (!state.rooms[state.room]) rooms.push({ id: state.room, name: state.room, visibility: "public" });
    rooms.sort(function (a, b) { return roomLabel(a).localeCompare(roomLabel(b)); });
    var here = atBottom() && !state.hasNewer, total = 0;
    // Drawn again only when something in it changed: a link someone is about to click
    // stays the same element.
    var key = JSON.stringify([state.room, here, $.map(rooms, function (r) {
      return [[r.id, roomLabel(r), r.visibility, state.unread[r.id] || null]];
    })]);
    $.each(rooms, function (_, r) {
      var u = state.unread[r.id];
      if (u && u.unread && !(r.id === state.room && here)) total += u.unread;
    });
    if (key !== drawnRooms) {
      drawnRooms = key;
      var $rooms = $("#room-list").empty(), $dms = $("#dm-list").empty();
      $.each(rooms, function (_, r) { (r.visibility === "direct" ? $dms : $rooms).append(roomItem(r)); });
      if (!$dms.children().length) $("<li class='muted'>").text(signedIn ? "None yet" : "Sign in to message someone").appendTo($dms);
    }
    document.title = (total ? "(" + total + ") " : "") + roomLabel(state.rooms[state.room] || { id: state.room, name: state.room }) + " · ferrochat";
    $("link[rel=icon]").attr("href", total ? "/static/icon-unread.svg" : "/static/icon.svg");
  }
  function drawHeader() {
    var r = state.rooms[state.room] || { id: state.room, name: state.room };
    $("#room-name").text(roomLabel(r));
    $("#room-description").text(r.description || (r.visibility === "direct" ? "A direct conversation" : ""));
    $("#msg").attr("placeholder", "Message " + (r.visibility === "direct" ? roomLabel(r) : "#" + roomLabel(r)));
  }

  // Read up to the newest message on screen, said to the server half a second later (or
  // at once when the room is left), so a burst of messages is one mark.
  var pendingMark = null, markTimer = null;
  function maybeMarkRead() {
    if (document.visibilityState !== "visible" || state.hasNewer || !atBottom() || !state.exists) return;
    var last = state.msgs[state.msgs.length - 1];
    if (!last) return;
    var u = state.unread[state.room];
    if (u && u.last_read_id >= last.id && !u.unread) return;
    if (pendingMark && pendingMark.room === state.room && pendingMark.id >= last.id) return;
    pendingMark = { room: state.room, id: last.id };
    clearTimeout(markTimer);
    markTimer = setTimeout(flushMark, 500);
  }
  function flushMark() {
    clearTimeout(markTimer);
    var mark = pendingMark;
    pendingMark = null;
    if (!mark) return;
    api("POST", "/api/chat/rooms/" + enc(mark.room) + "/read", { last_read_id: mark.id, user_id: signedIn ? undefined : myId })
      .done(function () {
        var u = state.unread[mark.room] || {};
        if ((u.last_read_id || 0) <= mark.id) {
          state.unread[mark.room] = $.extend({}, u, { last_read_id: mark.id, unread: 0, mentions: 0 });
          drawRooms();
        }
      });
  }

  // --- switching rooms ---------------------------------------------------------------
  function roomFromPath() {
    var p = decodeURIComponent(location.pathname.replace(/^\//, ""));
    return p || "general";
  }
  function openRoom(room, push, atMessage) {
    flushMark();
    if (push) window.history.pushState({ room: room }, "", "/" + enc(room) + (atMessage ? "#m-" + atMessage : ""));
    disconnect();
    state.generation++;
    state.room = room;
    state.exists = !!state.rooms[room];
    state.msgs = []; state.byId = {}; state.lastSeq = 0; state.newWhileAway = 0;
    state.readMark = (state.unread[room] || {}).last_read_id || 0;
    typists = {};
    drawTyping();
    cancelReply();
    body.setAttribute("data-room", room);
    $list.empty();
    drawHeader();
    drawRooms();
    closeDrawer();
    // A name nobody wrote in yet has no history to read: the socket alone, until its
    // first message makes the room.
    var latest = loadLatest();
    latest.always(function () {
      connect();
      if (atMessage) openAt(atMessage);
    });
  }
  $(document).on("click", "a.room-link", function (e) {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button) return;
    e.preventDefault();
    var room = $(this).attr("data-room");
    if (room !== state.room) openRoom(room, true);
    $("#msg").focus();
  });
  $(window).on("popstate", function () {
    var room = roomFromPath(), hash = /^#m-(\d+)$/.exec(location.hash);
    if (room !== state.room) openRoom(room, false, hash ? +hash[1] : null);
    else if (hash) openAt(+hash[1]);
  });

  // --- the composer ------------------------------------------------------------------
  var $msg = $("#msg");
  function postMessage(fields) {
    var data = $.extend({ username: myName(), user_id: myId }, fields);
    var room = state.room;
    if (!state.exists && !data.reply_to && !data.message_type) {
      // A room nobody wrote in yet: the Flask original's door makes it with its first
      // message (as every room of the original exists); the socket brings the message.
      return api("POST", "/api/chat/" + enc(room), { username: data.username, msg: data.content })
        .done(function () { state.exists = true; refreshRooms(); })
        .fail(function (xhr) { say(reason(xhr, "not sent")); });
    }
    return api("POST", "/api/chat/rooms/" + enc(room) + "/messages", data).done(function (m) {
      // The socket brings it too; whichever comes first draws it.
      if (room === state.room) apply($.extend({ type: "message" }, m));
    }).fail(function (xhr) { say(reason(xhr, "not sent")); });
  }
  function grow() {
    var el = $msg[0];
    el.style.height = "auto";
    el.style.height = Math.min(el.scrollHeight, 200) + "px";
  }
  $("#composer").on("submit", function (e) {
    e.preventDefault();
    var text = $msg.val();
    if (!$.trim(text)) return;
    var fields = { content: text };
    if (state.replyTo) fields.reply_to = state.replyTo.id;
    $msg.val(""); grow();
    var reply = state.replyTo;
    cancelReply();
    stopSendingTyping();
    if (!signedIn) localStorage.setItem("ferrochat.username", $.trim($name.val()));
    postMessage(fields).fail(function () {
      $msg.val(text); grow(); // nothing was stored: give the text back
      if (reply) startReply(reply);
    });
  });
  $msg.on("keydown", function (e) {
    if (mentionKeys(e)) return;
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("#composer").trigger("submit");
    } else if (e.key === "ArrowUp" && !$msg.val()) {
      var own = $.grep(state.msgs, function (m) { return mine(m) && m.message_type !== "file"; });
      if (own.length) { e.preventDefault(); startEdit(own[own.length - 1].id); }
    } else if (e.key === "Escape" && state.replyTo) {
      cancelReply();
    }
  });
  $msg.on("input", function () { grow(); sendTyping(); mentionSuggest(); });

  // Paste or drop a file to upload it.
  $msg.on("paste", function (e) {
    var files = e.originalEvent.clipboardData && e.originalEvent.clipboardData.files;
    if (files && files.length) { e.preventDefault(); upload(files[0]); }
  });
  $("#room").on("dragover", function (e) { e.preventDefault(); $(this).addClass("dropping"); })
    .on("dragleave drop", function () { $(this).removeClass("dropping"); })
    .on("drop", function (e) {
      e.preventDefault();
      var files = e.originalEvent.dataTransfer && e.originalEvent.dataTransfer.files;
      if (files && files.length) upload(files[0]);
    });
  $("#attach-button").on("click", function () { $("#attach").trigger("click"); });
  $("#attach").on("change", function () { upload(this.files && this.files[0]); this.value = ""; });

  // Replies.
  function startReply(m) {
    state.replyTo = { id: m.id, username: m.username, content: m.content };
    $("#reply-text").empty().append("Replying to ", $("<b>").text(m.username), ": ",
      document.createTextNode((m.content || "").slice(0, 140)));
    $("#reply-preview").prop("hidden", false);
    $msg.focus();
  }
  function cancelReply() { state.replyTo = null; $("#reply-preview").prop("hidden", true); }
  $("#reply-cancel").on("click", function () { cancelReply(); $msg.focus(); });

  // --- @ completion ------------------------------------------------------------------
  var mentionChoice = -1;
  function mentionWord() {
    var el = $msg[0], upTo = el.value.slice(0, el.selectionStart);
    var m = /(^|\s)@([\w.\-]*)$/.exec(upTo);
    return m ? { start: upTo.length - m[2].length, word: m[2] } : null;
  }
  function mentionSuggest() {
    var w = mentionWord(), $opts = $("#mention-options");
    if (!w) { closeMentions(); return; }
    var names = {}, q = w.word.toLowerCase();
    $.each(state.online, function (_, u) { names[u.username] = true; });
    $.each(state.msgs, function (_, m) { names[m.username] = true; });
    delete names[myName()];
    var found = $.grep(Object.keys(names), function (n) {
      return n && /^[\w.\-]+$/.test(n) && n.toLowerCase().indexOf(q) === 0;
    }).sort().slice(0, 8);
    if (!found.length) { closeMentions(); return; }
    $opts.empty();
    $.each(found, function (i, n) {
      $("<li role='option'>").attr({ id: "mention-" + i, "aria-selected": "false", "data-name": n }).text("@" + n).appendTo($opts);
    });
    mentionChoice = 0;
    markMention();
    $opts.prop("hidden", false);
  }
  function markMention() {
    $("#mention-options li").attr("aria-selected", "false").eq(mentionChoice).attr("aria-selected", "true");
    $msg.attr("aria-activedescendant", mentionChoice >= 0 ? "mention-" + mentionChoice : null);
  }
  function closeMentions() {
    $("#mention-options").prop("hidden", true).empty();
    mentionChoice = -1;
    $msg.removeAttr("aria-activedescendant");
  }
  function chooseMention(name) {
    var w = mentionWord();
    if (!w) return;
    var el = $msg[0], v = el.value;
    el.value = v.slice(0, w.start) + name + " " + v.slice(el.selectionStart);
    var at = w.start + name.length + 1;
    el.setSelectionRange(at, at);
    closeMentions();
  }
  function mentionKeys(e) {
    var $opts = $("#mention-options li");
    if (!$opts.length) return false;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      mentionChoice = (mentionChoice + (e.key === "ArrowDown" ? 1 : $opts.length - 1)) % $opts.length;
      markMention();
    } else if (e.key === "Enter" || e.key === "Tab") {
      chooseMention($opts.eq(Math.max(mentionChoice, 0)).attr("data-name"));
    } else if (e.key === "Escape") {
      closeMentions();
    } else {
      return false;
    }
    e.preventDefault();
    return true;
  }
  $("#mention-options").on("mousedown", "li", function (e) {
    e.preventDefault();
    chooseMention($(this).attr("data-name"));
  });

  // --- actions on a message ----------------------------------------------------------
  function messageOf(el) { return state.byId[$(el).closest("article").attr("data-id")]; }
  $list.on("click", ".act-reply", function () { var m = messageOf(this); if (m) startReply(m); });
  $list.on("click", ".act-edit", function () { var m = messageOf(this); if (m) startEdit(m.id); });
  $list.on("click", ".act-delete", function () {
    var m = messageOf(this);
    if (!m || !window.confirm("Delete this message? Everyone will stop seeing it.")) return;
    api("DELETE", "/api/chat/messages/" + m.id).done(function () { removeMessage(m.id); })
      .fail(function (xhr) { say(reason(xhr, "not deleted")); });
  });
  $list.on("click", ".act-link", function () {
    var m = messageOf(this);
    if (!m) return;
    var link = location.origin + "/" + enc(state.room) + "#m-" + m.id;
    var done = function () { say("Link copied"); };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(link).then(done, function () { say(link, true); });
    else say(link, true);
  });
  $list.on("click", ".reaction", function () {
    var m = messageOf(this);
    if (m) react(m, $(this).attr("data-emoji"), $(this).attr("aria-pressed") === "true");
  });
  $list.on("click", ".reply-to", function () {
    var id = +$(this).attr("data-target");
    if (state.byId[id]) highlight(id); else openAt(id);
  });
  $list.on("click", "article", function (e) {
    // Touch: a tap on a message shows its actions (hover does this for a mouse).
    if ($(e.target).closest("button, a, textarea").length) return;
    $list.children(".touched").not(this).removeClass("touched");
    $(this).toggleClass("touched");
  });

  function react(m, emoji, mineAlready) {
    var path = asMe("/api/chat/messages/" + m.id + "/reactions/" + enc(emoji));
    api(mineAlready ? "DELETE" : "PUT", path).done(function (r) {
      // The frame brings the count to everyone; the answer brings it here at once.
      var count = r && r.count !== undefined ? r.count : null;
      if (count !== null) apply({ type: "reaction_added", room_id: state.room, message_id: m.id, emoji: emoji, user_id: myId, count: count });
      else {
        var had = $.grep(m.reactions || [], function (x) { return x.emoji === emoji; })[0];
        apply({ type: "reaction_removed", room_id: state.room, message_id: m.id, emoji: emoji, user_id: myId, count: Math.max(0, (had ? had.count : 1) - 1) });
      }
    }).fail(function (xhr) { say(reason(xhr, "reaction not saved")); });
  }

  var pickerFor = null, pickerFrom = null;
  $list.on("click", ".act-react", function () {
    var m = messageOf(this);
    if (!m) return;
    pickerFor = m.id; pickerFrom = this;
    var $p = $("#react-picker").empty();
    var choices = COMMON_EMOJI.slice();
    $.each(m.reactions || [], function (_, r) { if (choices.indexOf(r.emoji) < 0) choices.push(r.emoji); });
    $.each(choices, function (_, emoji) {
      $("<button type='button' class='pick'>").attr({ "data-emoji": emoji, "aria-label": "React with " + emoji }).text(emoji).appendTo($p);
    });
    var r = this.getBoundingClientRect();
    $p.css({ top: Math.max(8, r.top - 52) + "px", left: Math.max(8, Math.min(r.left - 120, window.innerWidth - 330)) + "px" })
      .prop("hidden", false);
    $p.find("button").first().focus();
  });
  $("#react-picker").on("click", ".pick", function () {
    var m = state.byId[pickerFor], emoji = $(this).attr("data-emoji");
    closePicker();
    if (!m) return;
    var had = $.grep(m.reactions || [], function (x) { return x.emoji === emoji && x.me; }).length > 0;
    react(m, emoji, had);
  }).on("keydown", function (e) {
    var $b = $(this).find("button"), i = $b.index(document.activeElement);
    if (e.key === "Escape") closePicker();
    else if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      e.preventDefault();
      $b.eq((i + (e.key === "ArrowRight" ? 1 : $b.length - 1)) % $b.length).focus();
    }
  });
  function closePicker() {
    if ($("#react-picker").prop("hidden")) return;
    $("#react-picker").prop("hidden", true);
    if (pickerFrom && document.body.contains(pickerFrom)) pickerFrom.focus();
    pickerFor = null; pickerFrom = null;
  }
  $(document).on("mousedown", function (e) {
    if (!$(e.target).closest("#react-picker, .act-react").length) closePicker();
    if (!$(e.target).closest(".search").length) closeSearch();
  });

  // Editing, in place.
  function startEdit(id) {
    var m = state.byId[id], $el = $("#m-" + id);
    if (!m || !$el.length || $el.find(".edit-form").length) return;
    var $form = $("<form class='edit-form'>");
    var $box = $("<textarea rows='2' maxlength='4096' aria-label='Edit message'>").val(m.content);
    $form.append($box, $("<div class='buttons'>").append(
      $("<button type='submit'>").text("Save"),
      $("<button type='button' class='edit-cancel'>").text("Cancel"),
      $("<span class='muted'>").text("Enter to save, Escape to cancel")));
    $el.find(".text").prop("hidden", true).after($form);
    $box.focus();
    $box[0].setSelectionRange(m.content.length, m.content.length);
    var done = function () { $form.remove(); $el.find(".text").prop("hidden", false); $msg.focus(); };
    $box.on("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $form.trigger("submit"); }
      else if (e.key === "Escape") { e.preventDefault(); done(); }
    });
    $form.on("click", ".edit-cancel", done);
    $form.on("submit", function (e) {
      e.preventDefault();
      var text = $box.val();
      if (!$.trim(text) || text === m.content) { done(); return; }
      api("PATCH", "/api/chat/messages/" + id, { content: text }).done(function (updated) {
        updated.reactions = updated.reactions || m.reactions;
        replaceMessage($.extend({}, m, updated));
        $msg.focus();
      }).fail(function (xhr) { say(reason(xhr, "not saved")); });
    });
  }

  // --- scrolling ---------------------------------------------------------------------
  var scrollQueued = false;
  $("#messages").on("scroll", function () {
    if (scrollQueued) return;
    scrollQueued = true;
    window.requestAnimationFrame(function () {
      scrollQueued = false;
      var el = $("#messages")[0];
      if (el.scrollTop < 300) loadOlder();
      if (el.scrollHeight - el.scrollTop - el.clientHeight < 300) loadNewer();
      showJump();
      if (atBottom()) { maybeMarkRead(); drawRooms(); }
    });
  });
  $("#jump-latest").on("click", function () {
    state.newWhileAway = 0;
    if (state.hasNewer) loadLatest().always(function () { scrollToBottom(); showJump(); });
    else { scrollToBottom(); showJump(); }
    $msg.focus();
  });
  $(document).on("visibilitychange", function () {
    if (document.visibilityState === "visible") { maybeMarkRead(); refreshUnread(); }
  });

  // --- typing ------------------------------------------------------------------------
  var typists = {};
  function drawTyping() {
    var now = Date.now(), names = [];
    $.each(typists, function (id, t) { if (t.until > now) names.push(t.name); else delete typists[id]; });
    $("#typing").text(names.length === 0 ? "" : names.join(", ") + (names.length === 1 ? " is typing…" : " are typing…"));
  }
  function stopTyping(id) { if (typists[id]) { delete typists[id]; drawTyping(); } }
  setInterval(drawTyping, 1000);
  var lastTypingSent = 0, typingStop = null;
  function sendTyping() {
    var now = Date.now();
    if (now - lastTypingSent > TYPING_SENT_MS && send({ type: "typing" })) lastTypingSent = now;
    clearTimeout(typingStop);
    typingStop = setTimeout(stopSendingTyping, 3000);
  }
  function stopSendingTyping() {
    clearTimeout(typingStop);
    if (lastTypingSent) send({ type: "stop_typing" });
    lastTypingSent = 0;
  }

  // --- who is online -----------------------------------------------------------------
  function heartbeat() {
    if (leaving) return;
    $.post("/api/presence/" + enc(myId) + "/heartbeat?username=" + enc(myName()));
  }
  function refreshOnline() {
    api("GET", "/api/presence").done(function (users) {
      state.online = $.grep(users, function (u) { return u.online !== false; });
      var $ul = $("#online").empty();
      $.each(state.online, function (_, u) {
        state.people[u.user_id] = u.username;
        $("<li>").append($("<span class='dot' aria-hidden='true'>"),
          document.createTextNode(u.username + (u.user_id === myId ? " (you)" : ""))).appendTo($ul);
      });
      var n = state.online.length;
      $("#room-online").text(n ? n + " online" : "");
    });
  }
  $(window).on("pagehide", function () {
    if (window.fetch) fetch("/api/presence/" + enc(myId), { method: "DELETE", keepalive: true });
  });

  // --- search ------------------------------------------------------------------------
  var $search = $("#search"), searchTimer = null, searchAsked = "";
  function closeSearch() { $("#search-results").prop("hidden", true); }
  function runSearch() {
    var q = $.trim($search.val());
    if (q.length < 2) { closeSearch(); return; }
    if (q === searchAsked && !$("#search-results").prop("hidden")) return;
    searchAsked = q;
    api("GET", "/api/search?" + $.param({ q: q, limit: 20 })).done(function (hits) {
      if ($.trim($search.val()) !== q) return;
      var $r = $("#search-results").empty();
      $("<p class='muted' role='status'>").text(hits.length ? hits.length + (hits.length === 20 ? "+" : "") + " found" : "Nothing found").appendTo($r);
      var $ul = $("<ul aria-label='Search results'>").appendTo($r);
      $.each(hits, function (_, h) {
        var room = state.rooms[h.room_id], where = room ? roomLabel(room) : h.room_id;
        var d = when(h);
        var $a = $("<a class='hit'>").attr({ href: "/" + enc(h.room_id) + "#m-" + h.id, "data-room": h.room_id, "data-id": h.id });
        $a.append($("<span class='hit-meta'>").append($("<b>").text(h.username), " in ",
          $("<span>").text((room && room.visibility === "direct" ? "" : "#") + where), " · ",
          $("<time>").attr({ datetime: d.toISOString(), title: exact(d) }).text(relative(d))));
        $a.append($("<span class='hit-text'>").append(snippetNodes(h.snippet)));
        $("<li>").append($a).appendTo($ul);
      });
      $r.prop("hidden", false);
    }).fail(function (xhr) { say(reason(xhr, "search failed")); });
  }
  $search.on("input", function () { clearTimeout(searchTimer); searchTimer = setTimeout(runSearch, 250); });
  $search.on("keydown", function (e) {
    if (e.key === "Enter") { e.preventDefault(); clearTimeout(searchTimer); searchAsked = ""; runSearch(); }
    else if (e.key === "ArrowDown") { e.preventDefault(); $("#search-results a").first().focus(); }
    else if (e.key === "Escape") { closeSearch(); $search.val(""); $msg.focus(); }
  });
  $("#search-results").on("keydown", "a", function (e) {
    var $all = $("#search-results a"), i = $all.index(this);
    if (e.key === "ArrowDown") { e.preventDefault(); $all.eq(Math.min(i + 1, $all.length - 1)).focus(); }
    else if (e.key === "ArrowUp") { e.preventDefault(); if (i === 0) $search.focus(); else $all.eq(i - 1).focus(); }
    else if (e.key === "Escape") { closeSearch(); $search.focus(); }
  }).on("click", "a.hit", function (e) {
    e.preventDefault();
    var room = $(this).attr("data-room"), id = +$(this).attr("data-id");
    closeSearch();
    if (room === state.room) { window.history.pushState({ room: room }, "", "/" + enc(room) + "#m-" + id); openAt(id); }
    else openRoom(room, true, id);
  });
  $(document).on("keydown", function (e) {
    var typing = $(e.target).is("input, textarea, [contenteditable]");
    if ((e.ctrlKey || e.metaKey) && (e.key === "k" || e.key === "K")) { e.preventDefault(); $search.focus().select(); }
    else if (e.key === "/" && !typing) { e.preventDefault(); $search.focus().select(); }
    else if (e.key === "Escape") { closePicker(); closeDrawer(); }
  });

  // --- rooms and direct messages: making them ----------------------------------------
  function dialog(id) { var d = document.getElementById(id); d.showModal(); return d; }
  $(document).on("click", ".close-dialog", function () { $(this).closest("dialog")[0].close(); });
  $("#open-signin").on("click", function () { dialog("signin-dialog"); $("#signin-name").focus(); });
  $("#signout").on("click", function () {
    leaving = true;
    disconnect();
    $.post("/api/auth/logout").always(function () { location.reload(); });
  });
  $("#new-room").on("click", function () { $("#room-form-error").text(""); dialog("room-dialog"); });
  $("#room-form").on("submit", function (e) {
    e.preventDefault();
    var name = $.trim($("#room-form-name").val());
    api("POST", "/api/chat/rooms", {
      name: name, description: $.trim($("#room-form-description").val()) || undefined,
      "private": $("#room-form-private").prop("checked")
    }).done(function (room) {
      state.rooms[room.id] = room;
      document.getElementById("room-dialog").close();
      $("#room-form")[0].reset();
      openRoom(room.id, true);
    }).fail(function (xhr) { $("#room-form-error").text(reason(xhr, "not created")); });
  });
  $("#new-dm").on("click", function () {
    if (!signedIn) { dialog("signin-dialog"); $("#signin-name").focus(); return; }
    var $dl = $("#dm-people").empty();
    $.each(state.people, function (id, name) {
      if (isAccount(id) && id !== myId) $("<option>").attr("value", name).appendTo($dl);
    });
    $("#dm-form-error").text("");
    dialog("dm-dialog");
  });
  $("#dm-form").on("submit", function (e) {
    e.preventDefault();
    var name = $.trim($("#dm-form-name").val()).toLowerCase();
    var id = null;
    $.each(state.people, function (uid, n) { if (isAccount(uid) && uid !== myId && (n || "").toLowerCase() === name) id = uid; });
    var found = id ? $.Deferred().resolve([{ user_id: id }]).promise()
      : api("GET", "/api/auth/users?" + $.param({ q: name }));
    found.then(function (users) {
      var hit = $.grep(users || [], function (u) { return u.user_id !== myId && (!u.username || u.username.toLowerCase() === name); })[0];
      if (!hit) { $("#dm-form-error").text("Nobody has an account of that name."); return; }
      api("POST", "/api/chat/direct/" + enc(hit.user_id)).done(function (room) {
        state.rooms[room.id] = room;
        if (hit.username) state.people[hit.user_id] = hit.username;
        document.getElementById("dm-dialog").close();
        openRoom(room.id, true);
      }).fail(function (xhr) { $("#dm-form-error").text(reason(xhr, "not started")); });
    }, function (xhr) { $("#dm-form-error").text(reason(xhr, "nobody found")); });
  });

  // --- the drawer (phones) -----------------------------------------------------------
  function closeDrawer() {
    if (!body.classList.contains("drawer-open")) return;
    body.classList.remove("drawer-open");
    $("#drawer-toggle").attr({ "aria-expanded": "false", "aria-label": "Show rooms" });
    $("#scrim").prop("hidden", true);
  }
  $("#drawer-toggle").on("click", function () {
    if (body.classList.contains("drawer-open")) { closeDrawer(); return; }
    body.classList.add("drawer-open");
    $(this).attr({ "aria-expanded": "true", "aria-label": "Hide rooms" });
    $("#scrim").prop("hidden", false);
    $("#sidebar a").first().focus();
  });
  $("#scrim").on("click", closeDrawer);

  // --- times age ---------------------------------------------------------------------
  setInterval(function () {
    $list.find("time").each(function () { $(this).text(relative(new Date(this.getAttribute("datetime")))); });
  }, 60000);

  // --- start -------------------------------------------------------------------------
  heartbeat();
  setInterval(heartbeat, HEARTBEAT_MS);
  refreshOnline();
  setInterval(refreshOnline, HEARTBEAT_MS);
  setInterval(function () { if (document.visibilityState === "visible") refreshUnread(); }, UNREAD_MS);
  setInterval(function () { if (document.visibilityState === "visible") refreshRooms(); }, 3 * UNREAD_MS);
  state.room = roomFromPath();
  window.history.replaceState({ room: state.room }, "", location.pathname + location.hash);
  var startAt = /^#m-(\d+)$/.exec(location.hash);
  $.when(refreshRooms(), refreshUnread()).always(function () {
    openRoom(state.room, false, startAt ? +startAt[1] : null);
  });
});
