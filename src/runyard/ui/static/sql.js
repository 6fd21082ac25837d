// SQL Explorer: runs the query without reloading the page, Ctrl/Cmd+Enter, Stop, and names inserted from the
// table list. Without this file the page still works: the form posts and the server renders the result.
(() => {
  const form = document.getElementById("sql-form");
  if (!form) return;
  const editor = form.querySelector("textarea[name=sql]");
  const queryId = form.querySelector("input[name=query_id]");
  const csrf = form.querySelector("input[name=csrf_token]").value;
  const runButton = document.getElementById("sql-run");
  const stopButton = document.getElementById("sql-stop");
  const status = document.getElementById("sql-status");
  const result = document.getElementById("sql-result");
  const FRAGMENT = "X-Runyard-Fragment";
  const STOP_TRIES = 50; // a Stop sent before the server has registered the query is tried again (every 100 ms)
  let running = null; // the id of the query in flight

  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function setRunning(id) {
    running = id;
    runButton.disabled = id !== null;
    stopButton.hidden = id === null;
    result.setAttribute("aria-busy", id === null ? "false" : "true");
    status.textContent = id === null ? "" : "Running…";
  }

  function showProblem(text) {
    const box = document.createElement("div");
    box.className = "flash flash-error sql-error";
    box.setAttribute("role", "alert");
    box.id = "sql-error";
    box.textContent = text;
    result.replaceChildren(box);
  }

  async function run() {
    if (running !== null || !editor.value.trim()) {
      if (!editor.value.trim()) editor.reportValidity();
      return;
    }
    const id = newId();
    queryId.value = id;
    const body = new URLSearchParams(new FormData(form));
    setRunning(id);
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body,
        headers: { "X-CSRF-Token": csrf, [FRAGMENT]: "result" },
        credentials: "same-origin",
      });
      if (response.headers.get(FRAGMENT) === "result") {
        result.innerHTML = await response.text();
      } else if (response.redirected) {
        window.location.assign(response.url); // signed out, or not allowed: the page the server sent us to
      } else {
        showProblem(`runyard answered HTTP ${response.status}: reload the page and try again.`);
      }
    } catch (error) {
      showProblem(`The query could not be sent: ${error.message}`);
    } finally {
      queryId.value = "";
      setRunning(null);
    }
  }

  async function stop() {
    const id = running;
    if (id === null) return;
    status.textContent = "Stopping…";
    for (let attempt = 0; attempt < STOP_TRIES && running === id; attempt += 1) {
      const response = await fetch("/sql/stop", {
        method: "POST",
        body: new URLSearchParams({ csrf_token: csrf, query_id: id }),
        headers: { "X-CSRF-Token": csrf },
        credentials: "same-origin",
      });
      if (response.status !== 404) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  function insert(text) {
    const start = editor.selectionStart ?? editor.value.length;
    const end = editor.selectionEnd ?? start;
    editor.setRangeText(text, start, end, "end");
    editor.focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });
  stopButton.addEventListener("click", stop);
  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target.closest("[data-insert]") : null;
    if (target) {
      event.preventDefault(); // a name in a <summary> inserts; the arrow beside it opens the columns
      insert(target.getAttribute("data-insert"));
    }
  });
})();
