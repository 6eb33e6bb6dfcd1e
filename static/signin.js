// The sign-in page (auth = "required"): signs in or registers with /api/auth, which sets
// the session cookie, then loads the room again, now as the signed-in user.
(function () {
  "use strict";
  var form = document.getElementById("signin");
  var error = document.getElementById("signin-error");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var action = (event.submitter && event.submitter.value) || "login";
    error.textContent = "";
    fetch("/api/auth/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({
        username: document.getElementById("signin-name").value,
        password: document.getElementById("signin-password").value
      })
    })
      .then(function (res) {
        if (res.ok) { location.reload(); return null; }
        return res.json().then(function (body) { error.textContent = body.detail || res.statusText; });
      })
      .catch(function () { error.textContent = "the server does not answer; try again"; });
  });
})();
