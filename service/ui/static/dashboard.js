// Secret inputs are emptied whenever the page is left or shown again (back/forward cache, history,
// restored tabs, reloads), so a typed value never outlives the form it was typed into. A page loaded
// fresh is not emptied when shown: it holds only what was typed since it loaded (the server never sends
// a value back), and `pageshow` comes after `load`, when a quick user may already have typed.
(function () {
  function clearSecrets() {
    document.querySelectorAll("[data-secret]").forEach(function (el) { el.value = ""; });
  }
  function loadedFresh() {
    var nav = performance.getEntriesByType("navigation")[0];
    return nav !== undefined && nav.type === "navigate";
  }
  window.addEventListener("pagehide", clearSecrets);
  window.addEventListener("pageshow", function (e) {
    if (e.persisted || !loadedFresh()) clearSecrets();
  });

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

  // The .env import form: Preview and Import are sent from here and only the answer's preview section is
  // swapped in, so the pasted text or chosen file stays in the form (the server never sends it back).
  // Once imported, the answer is a redirect to the env vars list: followed.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.hasAttribute || !form.hasAttribute("data-import")) return;
    e.preventDefault();
    var action = (e.submitter && e.submitter.getAttribute("formaction")) || form.getAttribute("action");
    var section = document.getElementById("import-preview");
    var again = document.getElementById("import-again");
    if (again) again.remove();
    fetch(action, {method: "POST", body: new FormData(form), credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (r.redirected) { window.location.assign(r.url); return; }
        return r.text().then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("import-preview");
          if (fresh) {
            section.innerHTML = fresh.innerHTML;
          } else {  // an error page (rate limit, Vault unavailable, ...): shown as it is
            document.querySelector("main").innerHTML = doc.querySelector("main").innerHTML;
          }
        });
      })
      .catch(function () {
        section.innerHTML = '<p class="error" role="alert">The dashboard could not be reached; try again.</p>';
      });
  });
})();
