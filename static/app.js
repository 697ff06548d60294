// Progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", function () {
  // "Select all" for bulk decisions in the queue.
  var all = document.querySelector("[data-select-all]");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=submission_ids]").forEach(function (box) { box.checked = all.checked; });
    });
  }
});
