// berth UI: progressive enhancement only; every page works without this script.
(function () {
  "use strict";
  // Search as you type: fetch the same page for the query and swap the results in.
  function live(input) {
    var target = document.getElementById(input.dataset.live), timer, seq = 0;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var n = ++seq, url = "/?q=" + encodeURIComponent(input.value);
        fetch(url, { credentials: "same-origin" }).then(function (r) { return r.text(); }).then(function (text) {
          if (n !== seq) return;
          var doc = new DOMParser().parseFromString(text, "text/html"), fresh = doc.getElementById(input.dataset.live);
          if (fresh && target) { target.replaceWith(fresh); target = fresh; enhance(fresh); }
          history.replaceState(null, "", url);
        });
      }, 150);
    });
  }
  // Copy buttons.
  function copy(button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(button.dataset.copy).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
  }
  // Confirmation before a destructive form is sent.
  function confirmForm(form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.dataset.confirm)) { e.preventDefault(); return; }
      var c = document.createElement("input");
      c.type = "hidden"; c.name = "confirmed"; c.value = "1";
      form.appendChild(c);
    });
  }
  // Sortable tables: click a header to sort by it (numbers by their data-value).
  function sortable(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, i) {
      if (th.querySelector("a")) return;
      th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows), dir = th.dataset.dir === "asc" ? -1 : 1;
        th.dataset.dir = dir === 1 ? "asc" : "desc";
        function key(row) {
          var cell = row.cells[i]; if (!cell) return "";
          var v = cell.dataset.value; if (v !== undefined && v !== "" && !isNaN(v)) return Number(v);
          return (v || cell.textContent).trim().toLowerCase();
        }
        rows.sort(function (a, b) { var x = key(a), y = key(b); return x < y ? -dir : x > y ? dir : 0; });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  // Times as "5 minutes ago".
  function ago(el) {
    var t = Date.parse(el.getAttribute("datetime")); if (isNaN(t)) return;
    var s = Math.max(0, (Date.now() - t) / 1000), units = [[86400 * 365, "year"], [86400 * 30, "month"], [86400, "day"], [3600, "hour"], [60, "minute"]];
    for (var i = 0; i < units.length; i++) {
      var n = Math.floor(s / units[i][0]);
      if (n >= 1) { el.textContent = n + " " + units[i][1] + (n > 1 ? "s" : "") + " ago"; return; }
    }
    el.textContent = "just now";
  }
  function enhance(root) {
    root.querySelectorAll("button.copy[data-copy]").forEach(copy);
    root.querySelectorAll("form[data-confirm]").forEach(confirmForm);
    root.querySelectorAll("table.sortable").forEach(sortable);
    root.querySelectorAll("time[datetime]").forEach(ago);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[data-live]").forEach(live);
    enhance(document);
  });
})();
