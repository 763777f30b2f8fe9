// cachehub console: the only script (the Content-Security-Policy allows no inline script).
// 1. Forms with data-confirm ask before they submit (delete, clear).
// 2. An element with data-deadline (epoch seconds) counts its time to live down.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

function tick() {
  var nodes = document.querySelectorAll("[data-deadline]");
  var now = Date.now() / 1000;
  nodes.forEach(function (node) {
    var left = Number(node.getAttribute("data-deadline")) - now;
    if (!isFinite(left)) { return; }
    if (left <= 0) {
      node.textContent = "expired";
      node.classList.add("bad");
    } else {
      node.textContent = Math.ceil(left) + " s";
    }
  });
}
document.addEventListener("DOMContentLoaded", function () {
  if (document.querySelector("[data-deadline]")) {
    tick();
    window.setInterval(tick, 1000);
  }
});
