// Signing in or registering with /api/auth (either sets the session cookie), then loading
// the page again as the signed-in user. The sign-in page (auth = "required") and the page's
// own sign-in dialog (open mode) share this.
(function () {
  "use strict";
  var form = document.getElementById("signin");
  if (!form) return;
  var error = document.getElementById("signin-error");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var action = (event.submitter && event.submitter.value) || "login";
    var name = document.getElementById("signin-name").value;
    var password = document.getElementById("signin-password").value;
    error.textContent = "";
    fetch("/api/auth/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ username: name, password: password })
    })
      .then(function (res) {
        if (!res.ok) {
          return res.json().then(function (body) { error.textContent = body.detail || res.statusText; });
        }
        location.reload();
        return null;
      })
      .catch(function () { error.textContent = "the server does not answer; try again"; });
  });
})();
