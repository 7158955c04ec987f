// backchannel console: live updates and the clock. Everything works without this script;
// with it, a page refreshes its live regions ([data-live]) when the station's state changes.
(function () {
  "use strict";

  // The UTC clock in the bar.
  var clock = document.getElementById("clock");
  function tick() {
    if (!clock) return;
    var now = new Date();
    clock.textContent = now.toISOString().slice(11, 19) + "Z";
    clock.setAttribute("datetime", now.toISOString().slice(0, 19) + "Z");
  }
  if (clock) { tick(); setInterval(tick, 1000); }

  if (!document.body.hasAttribute("data-live-updates") || !window.EventSource) return;

  var busy = false;
  var again = false;
  var status = document.getElementById("live-status");

  function toLogin() {
    location.href = "/login?expired=1&next=" + encodeURIComponent(location.pathname + location.search);
  }

  function swap(doc) {
    var focused = document.activeElement && document.activeElement.id;
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var fresh = doc.getElementById(el.id);
      if (fresh && fresh.innerHTML !== el.innerHTML) {
        el.replaceWith(document.importNode(fresh, true));
      }
    });
    if (focused && document.activeElement !== document.getElementById(focused)) {
      var again = document.getElementById(focused);
      if (again) again.focus();
    }
    document.dispatchEvent(new CustomEvent("backchannel:updated"));
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected && new URL(response.url).pathname === "/login") { toLogin(); return null; }
        if (!response.ok) return null;
        return response.text();
      })
      .then(function (html) {
        if (html) swap(new DOMParser().parseFromString(html, "text/html"));
      })
      .catch(function () { /* the station may be restarting: the next event retries */ })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  var events = new EventSource("/events");
  events.addEventListener("change", refresh);
  events.addEventListener("expired", function () { events.close(); toLogin(); });
  events.addEventListener("open", function () {
    if (status) status.textContent = "Live updates on.";
  });
  events.addEventListener("error", function () {
    if (status) status.textContent = "Live updates interrupted; retrying…";
    if (events.readyState === EventSource.CLOSED) setTimeout(refresh, 2000);
  });
  window.backchannelRefresh = refresh;
})();
