// Keeps a dashboard page current: every few seconds it fetches the same page again and swaps its
// content in, unless a person is filling in a form there (a field has focus or was changed).
(function () {
  "use strict";
  var EVERY_MS = 3000;

  function busy(content) {
    var active = document.activeElement;
    if (active && content.contains(active) && active.tagName !== "A" && active.tagName !== "BODY") {
      return true;
    }
    var fields = content.querySelectorAll("form.approval input:not([type=hidden])");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) { return true; }
    }
    return false;
  }

  function refresh() {
    var content = document.getElementById("content");
    if (!content || document.body.dataset.refresh !== "on" || document.hidden || busy(content)) {
      return;
    }
    fetch(window.location.href, {headers: {"Accept": "text/html"}, cache: "no-store"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (text === null || busy(content)) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("content");
        if (fresh) {
          content.innerHTML = fresh.innerHTML;
          document.body.dataset.refreshedAt = String(Date.now());
        }
      })
      .catch(function () { /* the server may be restarting: try again next time */ });
  }

  window.setInterval(refresh, EVERY_MS);
}());
