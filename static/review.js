// Reviewer keyboard shortcuts (portal/templates/portal/review/_shortcuts.html lists them).
// Progressive enhancement only: each key presses a link or a button that is on the page and works
// without this file. No key acts while the cursor is in a text field, except Ctrl+Enter in the
// reason, which sends the decision chosen with r or c.
(function () {
  "use strict";

  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  function press(selector) {
    var el = document.querySelector(selector);
    if (el) { el.click(); }
    return Boolean(el);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-row]"));
    var current = -1;
    var help = document.getElementById("shortcuts");
    var reason = document.querySelector("#decision textarea");
    var pending = null; // "r" or "c": what Ctrl+Enter in the reason sends

    if (help) { help.hidden = true; }

    function toggleHelp() {
      if (!help) { return; }
      help.hidden = !help.hidden;
      if (!help.hidden) { help.focus(); }
    }

    function select(index) {
      if (!rows.length) { return; }
      if (current >= 0) { rows[current].classList.remove("selected"); }
      current = Math.max(0, Math.min(rows.length - 1, index));
      rows[current].classList.add("selected");
      var link = rows[current].querySelector("a[data-open]");
      if (link) { link.focus(); }
    }

    function chooseReason(key) {
      if (!reason) { return; }
      pending = key;
      var button = document.querySelector('[data-key="' + key + '"]');
      reason.setAttribute("data-sends", button ? button.value : "");
      reason.focus();
    }

    document.querySelectorAll(".shortcuts-link").forEach(function (link) {
      link.addEventListener("click", function (event) { event.preventDefault(); toggleHelp(); });
    });

    if (reason) {
      reason.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && pending) {
          event.preventDefault();
          press('[data-key="' + pending + '"]');
        } else if (event.key === "Escape") {
          reason.blur();
        }
      });
    }

    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
      var handled = true;
      switch (event.key) {
        case "j": if (rows.length) { select(current + 1); } else { handled = press('a[data-key="j"]'); } break;
        case "k": if (rows.length) { select(current - 1); } else { handled = press('a[data-key="k"]'); } break;
        case "o": handled = current >= 0 && press("tr.selected a[data-open]"); break;
        case "a": handled = press('#decision [data-key="a"]'); break;
        case "r": chooseReason("r"); handled = Boolean(reason); break;
        case "c": chooseReason("c"); handled = Boolean(reason); break;
        case "u": handled = press('a[data-key="u"]'); break;
        case "?": toggleHelp(); break;
        default: handled = false;
      }
      if (handled) { event.preventDefault(); } // the key must not also land in the field it focused
    });
  });
}());
