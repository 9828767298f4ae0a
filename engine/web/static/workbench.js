// ntd workbench: keyboard triage of the assessment grid (our own script, no libraries).
// j/k or arrows move, space selects, g selects the near-identical groups, 1 baseline,
// 2 national (both open the classification panel), 3 not illegal, 0 ignore, r (held) reveals,
// u undoes the last verdict, ? shows the keys. The panel has keys of its own (z x c v, b n m ,
// f h l o, Enter, Escape) that mean nothing outside it.
(function () {
  "use strict";
  var grid = document.getElementById("grid");
  var help = document.getElementById("keys");
  var statusLine = document.getElementById("status");
  var panel = document.getElementById("classify");
  var badge = document.getElementById("badge");
  var csrf = grid ? grid.dataset.csrf : "";
  var focus = 0;
  var lastCases = [];
  var pending = null; // {verdict, class, age, gender, virtual, user_generated, child_modelling}
  var revealed = null;
  var busy = false;

  function tiles() { return grid ? Array.prototype.slice.call(grid.querySelectorAll(".tile:not(.done)")) : []; }
  function say(text) { if (statusLine) { statusLine.textContent = text; } }

  function setFocus(i) {
    var t = tiles();
    if (!t.length) { return; }
    focus = Math.max(0, Math.min(i, t.length - 1));
    t.forEach(function (el, j) { el.classList.toggle("focused", j === focus); });
    t[focus].focus({ preventScroll: true });
    t[focus].scrollIntoView({ block: "nearest" });
  }

  function columns() {
    var t = tiles();
    if (t.length < 2) { return 1; }
    var top = t[0].offsetTop, n = 0;
    while (n < t.length && t[n].offsetTop === top) { n += 1; }
    return Math.max(1, n);
  }

  function toggle(el, on) {
    var value = on === undefined ? !el.classList.contains("selected") : on;
    el.classList.toggle("selected", value);
    el.setAttribute("aria-selected", value ? "true" : "false");
  }

  function targets() {
    var chosen = tiles().filter(function (el) { return el.classList.contains("selected"); });
    if (!chosen.length && tiles()[focus]) { chosen = [tiles()[focus]]; }
    return chosen;
  }

  function casesOf(els) {
    var ids = [];
    els.forEach(function (el) { ids = ids.concat(el.dataset.cases.split(",")); });
    return ids;
  }

  function post(url, fields) {
    var body = new URLSearchParams(fields);
    body.set("csrf", csrf);
    return fetch(url, { method: "POST", body: body, credentials: "same-origin",
                        headers: { "Content-Type": "application/x-www-form-urlencoded" } })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); });
  }

  function updateBadge(removedCases, removedGroups) {
    if (!badge) { return; }
    var c = Number(badge.dataset.cases) - removedCases;
    var g = Number(badge.dataset.groups) - removedGroups;
    badge.dataset.cases = c; badge.dataset.groups = g;
    badge.textContent = c + " cases · " + g + " groups";
  }

  function decide(verdict, classification) {
    var els = targets();
    if (!els.length || busy) { return; }
    var ids = casesOf(els);
    var first = tiles().indexOf(els[0]);
    var learn = document.getElementById("learn");
    var fields = { verdict: verdict, cases: ids.join(","),
                   learn: verdict !== "ignore" && learn && learn.checked ? "1" : "0" };
    if (classification) {
      Object.keys(classification).forEach(function (k) { fields[k] = classification[k]; });
      document.querySelectorAll(".question").forEach(function (q) { if (q.value) { fields[q.name] = q.value; } });
    }
    busy = true;
    post("/console/verdicts", fields).then(function (res) {
      busy = false;
      if (!res.ok) { say("Not recorded: " + (res.body.detail || "error")); return; }
      els.forEach(function (el) { el.classList.add("done"); el.classList.remove("focused", "selected"); });
      lastCases = ids;
      updateBadge(res.body.recorded, els.length);
      say("Recorded " + res.body.recorded + " × " + verdict.replace("_", " ") +
          (classification ? " (" + classification["class"] + ")" : "") +
          (res.body.skipped.length ? "; skipped " + res.body.skipped.length : "") +
          (res.body.pending.length ? "; " + res.body.pending.length + " await a second opinion" : "") +
          ". Press u to undo.");
      if (!tiles().length) {
        var next = new URL(window.location.href);
        next.searchParams.delete("done"); next.searchParams.delete("page");
        window.location.href = next.toString();
        return;
      }
      setFocus(Math.min(first, tiles().length - 1));
    }, function () { busy = false; say("Not recorded: the server did not answer."); });
  }

  function undo() {
    if (!lastCases.length || busy) { say("Nothing to undo."); return; }
    busy = true;
    var ids = lastCases;
    lastCases = [];
    Promise.all(ids.map(function (id) { return post("/console/cases/" + encodeURIComponent(id) + "/undo", {}); }))
      .then(function (results) {
        busy = false;
        var done = results.filter(function (r) { return r.ok; }).length;
        var url = new URL(window.location.href);
        url.searchParams.set("done", "Undone: " + done + " verdict" + (done === 1 ? "" : "s") + ".");
        window.location.href = url.toString();
      });
  }

  // -- the classification panel -----------------------------------------------------------------
  var AGE = { z: "ND", x: "IN", c: "PP", v: "PU" };
  var GENDER = { b: "UN", n: "FE", m: "MA", ",": "BO" };
  var FLAG = { f: "virtual", h: "user_generated", l: "child_modelling" };

  function show(field, value) { var el = document.getElementById("c-" + field); if (el) { el.textContent = value === undefined ? "?" : value; } }

  function openPanel(cls) {
    if (!panel || !targets().length) { return; }
    pending = { "class": cls };
    ["age", "gender", "virtual", "user_generated", "child_modelling"].forEach(function (f) { show(f); });
    document.getElementById("c-class").textContent = cls;
    panel.hidden = false;
  }

  function closePanel() { pending = null; if (panel) { panel.hidden = true; } }

  function panelKey(e) {
    var k = e.key;
    if (k === "Escape") { closePanel(); say("Cancelled."); return true; }
    if (AGE[k]) { pending.age = AGE[k]; show("age", AGE[k]); return true; }
    if (GENDER[k]) { pending.gender = GENDER[k]; show("gender", GENDER[k]); return true; }
    if (FLAG[k]) {
      var f = FLAG[k];
      pending[f] = pending[f] === "1" ? "0" : "1";
      show(f, pending[f] === "1" ? "yes" : "no");
      return true;
    }
    if (k === "o") {
      ["virtual", "user_generated", "child_modelling"].forEach(function (f) {
        if (pending[f] === undefined) { pending[f] = "0"; show(f, "no"); }
      });
      return true;
    }
    if (k === "Enter") {
      var missing = ["age", "gender", "virtual", "user_generated", "child_modelling"].filter(function (f) { return pending[f] === undefined; });
      if (missing.length) { say("Still to choose: " + missing.join(", ").replace(/_/g, " ") + "."); return true; }
      var c = pending;
      closePanel();
      decide("illegal", c);
      return true;
    }
    return false;
  }

  // -- reveal while held -------------------------------------------------------------------------
  function reveal(on) {
    var el = tiles()[focus];
    if (!el) { return; }
    var img = el.querySelector("img");
    if (!img) { return; }
    if (on && !revealed) {
      revealed = { img: img, src: img.getAttribute("src") };
      img.setAttribute("src", revealed.src + "&blur=0&grey=0");
    } else if (!on && revealed) {
      revealed.img.setAttribute("src", revealed.src);
      revealed = null;
    }
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    var tag = (e.target && e.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { if (e.key !== "Escape") { return; } }
    if (pending && panelKey(e)) { e.preventDefault(); return; }
    if (pending) { return; }
    var k = e.key;
    if (k === "?") { if (help) { help.hidden = !help.hidden; } e.preventDefault(); return; }
    if (!grid) { return; }
    if (k === "j" || k === "ArrowRight") { setFocus(focus + 1); }
    else if (k === "k" || k === "ArrowLeft") { setFocus(focus - 1); }
    else if (k === "ArrowDown") { setFocus(focus + columns()); }
    else if (k === "ArrowUp") { setFocus(focus - columns()); }
    else if (k === " ") { if (tiles()[focus]) { toggle(tiles()[focus]); } }
    else if (k === "g") {
      var here = tiles()[focus];
      if (here) { tiles().forEach(function (el) { if (el.dataset.near === here.dataset.near) { toggle(el, true); } }); }
    }
    else if (k === "1") { openPanel("baseline"); }
    else if (k === "2") { openPanel("national"); }
    else if (k === "3") { decide("not_illegal", null); }
    else if (k === "0") { decide("ignore", null); }
    else if (k === "r") { if (!e.repeat) { reveal(true); } }
    else if (k === "u") { undo(); }
    else { return; }
    e.preventDefault();
  });
  document.addEventListener("keyup", function (e) { if (e.key === "r") { reveal(false); } });

  var minutes = grid ? Number(grid.dataset.break) : 0;
  if (minutes > 0) {
    window.setTimeout(function () { var b = document.getElementById("break"); if (b) { b.hidden = false; } }, minutes * 60000);
  }
  if (grid) { setFocus(0); }
}());
