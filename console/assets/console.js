// DataFlare console: refresh the page's content every 2 s (the server
// renders it; without this script the pages read the same, refreshed by
// a <noscript> meta tag), and ask before an action.
(function () {
  "use strict";
  var main = document.getElementById("content");
  var live = document.getElementById("live");
  // Pages that show the outcome of an action (a replay) stay as they are.
  if (!main || !live || !main.hasAttribute("data-live")) return;
  live.hidden = false;
  var busy = false;

  function refresh() {
    if (busy || document.hidden) return;
    // Leave the page alone while a form in it has focus.
    var a = document.activeElement;
    if (a && main.contains(a) && a.form) return;
    busy = true;
    fetch(location.pathname + location.search, { headers: { "Df-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.text().then(function (t) { return { ok: r.ok || r.status === 503, text: t }; }); })
      .then(function (r) {
        if (!r.ok) throw new Error("status");
        main.innerHTML = r.text;
        live.textContent = "live";
        live.classList.remove("stale");
      })
      .catch(function () {
        live.textContent = "offline";
        live.classList.add("stale");
      })
      .then(function () { busy = false; });
  }
  setInterval(refresh, 2000);
  document.addEventListener("visibilitychange", refresh);

  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });
})();
