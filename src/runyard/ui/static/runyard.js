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

// A task's messages open in a row right under the task clicked (messages_fragment.html), one task at a time:
// clicking the count of the open task again closes them, and so does their Close button.
// htmx's swap events name the swapped element as `elt`; the element that asked is the request's.
const requester = (event) => (event.detail.requestConfig ? event.detail.requestConfig.elt : event.detail.elt);
const messagesLink = (elt) => elt instanceof Element && elt.matches("a.message-count");
const closeMessages = () => {
  for (const row of document.querySelectorAll("tr.messages-row")) row.remove();
};
document.addEventListener("htmx:beforeRequest", (event) => {
  const link = event.detail.elt;
  if (!messagesLink(link)) return;
  const next = link.closest("tr").nextElementSibling;
  if (next && next.matches("tr.messages-row") && next.dataset.messagesFor === link.closest("tr").dataset.taskId) {
    event.preventDefault();
    closeMessages();
  }
});
document.addEventListener("htmx:beforeSwap", (event) => {
  if (messagesLink(requester(event))) closeMessages();
});
// Once they arrive, move focus there (which scrolls them into view) so keyboard and screen reader users find them.
document.addEventListener("htmx:afterSwap", (event) => {
  if (messagesLink(requester(event))) {
    const panel = document.getElementById("messages-panel");
    if (panel) panel.focus();
  }
});
document.addEventListener("click", (event) => {
  const button = event.target instanceof Element && event.target.closest("button.close-messages");
  if (!button) return;
  const row = button.closest("tr.messages-row");
  const link = row && row.previousElementSibling && row.previousElementSibling.querySelector("a.message-count");
  closeMessages();
  if (link) link.focus();
});

// The run page's live refresh redraws the task table: put an open messages row back under its task (and the focus
// back where it was in it), so it does not vanish while someone reads it.
let keptMessages = null;
document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  if (!(target instanceof HTMLElement) || target.id !== "tasks") return;
  const row = target.querySelector("tr.messages-row");
  keptMessages = row ? { row, focused: row.contains(document.activeElement) ? document.activeElement : null } : null;
});
document.addEventListener("htmx:afterSettle", () => {
  if (!keptMessages) return;
  const { row, focused } = keptMessages;
  keptMessages = null;
  const tasks = document.getElementById("tasks");
  if (!tasks || tasks.contains(row)) return;
  const owner = tasks.querySelector(`tr[data-task-id="${row.dataset.messagesFor}"]`);
  if (!owner) return;
  owner.after(row);
  if (focused) focused.focus({ preventScroll: true });
});

// Tables too wide for the screen scroll inside their own box (macros.html, scroll_box); keep where someone
// scrolled one to across a live refresh, which redraws it.
const scrolled = new Map();
document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  if (!(target instanceof HTMLElement)) return;
  for (const box of target.querySelectorAll(".table-scroll[id]")) {
    if (box.scrollLeft) scrolled.set(box.id, box.scrollLeft);
  }
});
document.addEventListener("htmx:afterSettle", () => {
  for (const [id, left] of scrolled) {
    const box = document.getElementById(id);
    if (box) box.scrollLeft = left;
  }
  scrolled.clear();
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
