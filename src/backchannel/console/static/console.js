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

  // FLASH: a tone while an incoming FLASH waits for acknowledgement, when the station's console
  // setting asks for it ([console] flash_sound). The tone is generated here with the Web Audio
  // API: no sound file. It sounds for each new FLASH, then every 30 s until acknowledged.
  var soundOn = document.body.hasAttribute("data-flash-sound");
  var audio = null;
  var REPEAT_MS = 30000;

  function remembered() {
    try { return JSON.parse(sessionStorage.getItem("backchannel.flash") || "{}"); } catch (e) { return {}; }
  }
  function remember(state) {
    try { sessionStorage.setItem("backchannel.flash", JSON.stringify(state)); } catch (e) { /* private mode */ }
  }
  function flashRefs() {
    var banner = document.querySelector("#flash-banner [data-flash-refs]");
    return banner ? banner.getAttribute("data-flash-refs").split(" ").filter(Boolean) : [];
  }
  function blocked(yes) {
    var note = document.querySelector("#flash-banner .flash-sound-blocked");
    if (note) note.hidden = !yes;
  }
  function tone() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    try {
      if (!audio) audio = new Context();
      if (audio.state === "suspended") audio.resume();
      var t = audio.currentTime;
      [0, 0.3, 0.6].forEach(function (at, i) {
        var osc = audio.createOscillator();
        var gain = audio.createGain();
        osc.type = "square";
        osc.frequency.value = i === 1 ? 660 : 880;
        gain.gain.setValueAtTime(0.0001, t + at);
        gain.gain.exponentialRampToValueAtTime(0.15, t + at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.22);
        osc.connect(gain);
        gain.connect(audio.destination);
        osc.start(t + at);
        osc.stop(t + at + 0.25);
      });
      // A browser that allows no sound before the operator touches the page keeps it suspended.
      setTimeout(function () { blocked(audio.state === "suspended"); }, 300);
    } catch (e) { /* no audio device: the banner and the title still say it */ }
  }
  function attention() {
    var refs = flashRefs();
    if (!soundOn || !refs.length) return;
    if (audio) blocked(audio.state === "suspended");
    var state = remembered();
    var heard = state.heard || [];
    var fresh = refs.some(function (ref) { return heard.indexOf(ref) < 0; });
    if (fresh || Date.now() - (state.at || 0) >= REPEAT_MS) {
      remember({ heard: refs, at: Date.now() });
      tone();
    }
  }
  if (soundOn) {
    var unlock = function () {
      if (audio && audio.state === "suspended") audio.resume().then(function () { blocked(false); });
    };
    document.addEventListener("pointerdown", unlock);
    document.addEventListener("keydown", unlock);
    document.addEventListener("backchannel:updated", attention);
    attention();
    setInterval(attention, 5000);
  }

  if (!document.body.hasAttribute("data-live-updates") || !window.EventSource) return;

  var busy = false;
  var again = false;
  var status = document.getElementById("live-status");

  function toLogin() {
    location.href = "/login?expired=1&next=" + encodeURIComponent(location.pathname + location.search);
  }

  function swap(doc) {
    if (doc.title && doc.title !== document.title) document.title = doc.title;  // "FLASH · ..."
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
