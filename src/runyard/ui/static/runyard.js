// Small enhancements; every page works without them.
document.documentElement.classList.add("js");

// Filter and page-size selects submit their form as soon as they change.
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
    target.form.requestSubmit();
  }
  // "Select every run" checks or clears every checkbox with the name it names.
  if (target instanceof HTMLInputElement && target.dataset.selectAll) {
    for (const box of target.form.querySelectorAll(`input[name="${target.dataset.selectAll}"]`)) {
      box.checked = target.checked;
    }
  }
});

// When a task's messages arrive in the panel, move focus there so keyboard and screen reader users find them.
document.addEventListener("htmx:afterSwap", (event) => {
  if (event.detail.target && event.detail.target.id === "messages") {
    const panel = document.getElementById("messages-panel");
    if (panel) panel.focus();
  }
});

// A live region does not refresh while someone is using a control inside it (an open select, a checked box
// waiting for "Retry selected"): the refresh would throw their choice away. It resumes once they are done.
document.addEventListener("htmx:beforeRequest", (event) => {
  const elt = event.detail.elt;
  if (!(elt instanceof HTMLElement) || !(elt.getAttribute("hx-trigger") || "").startsWith("every")) return;
  const active = document.activeElement;
  const busy = active && active !== elt && elt.contains(active) && active.matches("select, input, textarea");
  if (busy || elt.querySelector("input[type=checkbox]:checked")) event.preventDefault();
});
