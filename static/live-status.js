// Live status (progressive enhancement; the pages work without it): while a submission's files
// are being scanned, poll its JSON status and update the page in place. Polling stops when
// nothing is scanning any more; a detail page then reloads once so its links and forms appear.
(function () {
  "use strict";
  var INTERVAL_MS = 3000;
  var MAX_POLLS = 200; // about ten minutes; after that, a reload shows the truth
  var MAX_WATCHED = 10; // a list with more scanning rows polls the newest ten (each row is one request)

  function update(box, data) {
    box.querySelectorAll("[data-live-field=status]").forEach(function (el) {
      var word = document.createElement("span");
      word.className = "status status-" + data.status;
      word.textContent = data.status_word;
      el.replaceChildren(word);
    });
    box.querySelectorAll("[data-live-field=next_step]").forEach(function (el) {
      el.textContent = data.next_step;
    });
    (data.files || []).forEach(function (f) {
      document.querySelectorAll("[data-live-file='" + f.id + "']").forEach(function (el) {
        el.textContent = el.getAttribute("data-name") + ": " + f.word;
      });
    });
    box.setAttribute("data-live-state", data.status);
  }

  function watch(box) {
    var url = box.getAttribute("data-live-status");
    var polls = 0;
    function tick() {
      polls += 1;
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (data) {
          update(box, data);
          if (data.scanning && polls < MAX_POLLS) {
            window.setTimeout(tick, INTERVAL_MS);
          } else if (!data.scanning && box.hasAttribute("data-live-reload")) {
            window.location.reload();
          }
        })
        .catch(function () { if (polls < MAX_POLLS) { window.setTimeout(tick, INTERVAL_MS * 2); } });
    }
    window.setTimeout(tick, INTERVAL_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("[data-live-status][data-live-state=scanning]");
    Array.prototype.slice.call(boxes, 0, MAX_WATCHED).forEach(watch);
  });
})();
