(function () {
  "use strict";
  var table = document.getElementById("cases");
  if (table) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var text = rows.map(function (r) { return r.textContent.toLowerCase(); });
    var query = document.getElementById("q"), status = document.getElementById("st");
    var shown = document.getElementById("shown");
    var apply = function () {
      var q = query.value.toLowerCase(), s = status.value, n = 0;
      rows.forEach(function (r, i) {
        var match = !s || (s === "!pass" ? r.className !== "s-pass" : r.className === "s-" + s);
        var ok = match && (!q || text[i].indexOf(q) >= 0);
        r.hidden = !ok;
        if (ok) n++;
      });
      shown.textContent = String(n);
    };
    query.addEventListener("input", apply);
    status.addEventListener("change", apply);
    var all = document.getElementById("show-all");
    if (all) {
      all.addEventListener("click", function () { query.value = ""; status.value = ""; apply(); });
    }
    apply();  // the browser may restore a form state other than the page's default
    var value = function (cell, numeric) {
      var t = cell ? cell.textContent : "";
      if (!numeric) return t;
      if (t === "") return -Infinity;
      if (t === "inf" || t === "nan") return Infinity;
      return parseFloat(t);
    };
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener("click", function () {
        var numeric = th.classList.contains("n");
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (o) { o.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir > 0 ? "asc" : "desc");
        var order = rows.map(function (r, i) { return [value(r.cells[col], numeric), i]; });
        order.sort(function (a, b) {
          if (a[0] < b[0]) return -dir;
          if (a[0] > b[0]) return dir;
          return a[1] - b[1];
        });
        var frag = document.createDocumentFragment();
        order.forEach(function (o) { frag.appendChild(rows[o[1]]); });
        body.appendChild(frag);
      });
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("button.copy"), function (btn) {
    btn.addEventListener("click", function () {
      var pre = document.getElementById(btn.getAttribute("data-target"));
      var done = function () { btn.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(pre.textContent).then(done, function () { fallback(pre); done(); });
      } else { fallback(pre); done(); }
    });
  });
  function fallback(pre) {
    var area = document.createElement("textarea");
    area.value = pre.textContent;
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(area);
  }
})();
