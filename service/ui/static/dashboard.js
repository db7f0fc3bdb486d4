// Secret inputs are emptied whenever the page is left or shown again (back/forward cache, restored
// tabs), so a typed value never outlives the form it was typed into.
(function () {
  function clearSecrets() {
    document.querySelectorAll("input[data-secret]").forEach(function (el) { el.value = ""; });
  }
  window.addEventListener("pagehide", clearSecrets);
  window.addEventListener("pageshow", clearSecrets);

  // The job form's preview: the names of the selected env vars, never anything else.
  function updatePreview() {
    var out = document.getElementById("selected-names");
    if (!out) return;
    var names = Array.prototype.map.call(
      document.querySelectorAll("input[name=env_var_ids]:checked"), function (el) { return el.dataset.name; });
    out.textContent = names.length ? names.join(", ") : "none";
  }
  document.addEventListener("change", function (e) {
    if (e.target && e.target.name === "env_var_ids") updatePreview();
  });
  document.addEventListener("DOMContentLoaded", updatePreview);

  // A running job's section: fetched again and swapped in until the job has finished; every second at
  // first, then less often (up to every 5 s), so a long job spends little of the user's rate limit.
  function refresh(delay) {
    var section = document.querySelector("[data-refresh]");
    if (!section) return;
    delay = delay || Number(section.dataset.refresh) || 1000;
    setTimeout(function () {
      fetch(window.location.href, {cache: "no-store", credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(section.id);
          if (!fresh) return;
          section.innerHTML = fresh.innerHTML;
          if (!fresh.hasAttribute("data-refresh")) section.removeAttribute("data-refresh");
          refresh(Math.min(5000, delay * 1.25));
        })
        .catch(function () { refresh(5000); });
    }, delay);
  }
  document.addEventListener("DOMContentLoaded", function () { refresh(); });
})();
