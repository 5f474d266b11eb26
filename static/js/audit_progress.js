// Live progress for a queued or running audit (or gate candidate: data-url names its API): polls the API and
// reloads the page when it ends.
(function () {
  var box = document.getElementById("audit-status");
  if (!box || (box.dataset.status !== "queued" && box.dataset.status !== "running")) { return; }
  var bar = document.getElementById("audit-progress");
  var step = document.getElementById("audit-step");
  var state = document.getElementById("audit-state");
  function poll() {
    fetch(box.dataset.url || "/api/v1/audits/" + box.dataset.run, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (run) {
        bar.style.width = run.progress + "%";
        step.textContent = run.step || "";
        state.textContent = run.status;
        if (run.status === "done" || run.status === "failed") { window.location.reload(); }
        else { window.setTimeout(poll, 1500); }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
