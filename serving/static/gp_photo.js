/*
 * GP photo check: as soon as a photo is chosen, show it, send it to POST /api/v1/quality and
 * show the verdict with the retake advice for each problem. The server decides everything; this
 * script only displays. Text from the server is always inserted as text, never as HTML.
 */
(function () {
  "use strict";

  const root = document.querySelector("[data-quality-check]");
  if (!root) {
    return;
  }
  const strings = JSON.parse(document.getElementById("gp-photo-strings").textContent);
  const endpoint = root.dataset.endpoint;
  const lang = root.dataset.lang;
  const maxBytes = Number(root.dataset.maxBytes);

  const el = (name) => root.querySelector("[data-" + name + "]");
  const inputs = root.querySelectorAll("[data-photo-input]");
  const result = el("result");
  const preview = el("preview");
  const previewFallback = el("preview-fallback");
  const checking = el("checking");
  const verdict = el("verdict");
  const banner = el("verdict-banner");
  const errorBox = el("error");
  const retry = el("retry");
  const announcer = el("announce");
  const adviceTemplate = document.getElementById("advice-item");

  let previewUrl = null;
  let latest = 0; // only the most recent photo's answer is shown

  function showPreview(file) {
    if (previewUrl) {
      URL.revokeObjectURL(previewUrl);
    }
    previewUrl = URL.createObjectURL(file);
    previewFallback.hidden = true;
    preview.hidden = false;
    preview.src = previewUrl;
  }

  preview.addEventListener("error", () => {
    // Chromium and Firefox cannot display HEIC; the server can still judge it.
    preview.hidden = true;
    previewFallback.hidden = false;
  });

  function setState(state) {
    result.hidden = false;
    result.dataset.state = state;
    checking.hidden = state !== "checking";
    verdict.hidden = state !== "verdict";
    errorBox.hidden = state !== "error";
    retry.hidden = state === "checking";
    result.setAttribute("aria-busy", String(state === "checking"));
  }

  function showError(message) {
    setState("error");
    el("error-text").textContent = message;
    announcer.textContent = message;
  }

  function formatSize(metrics) {
    const width = metrics.original_width;
    const height = metrics.original_height;
    if (!width || !height) {
      return "";
    }
    return Math.round(width) + " × " + Math.round(height) + " px";
  }

  function showVerdict(answer) {
    setState("verdict");
    const ok = Boolean(answer.acceptable);
    banner.classList.toggle("verdict__banner--ok", ok);
    banner.classList.toggle("verdict__banner--retake", !ok);
    el("verdict-title").textContent = ok ? strings.verdict_ok : strings.verdict_retake;
    el("verdict-detail").textContent = ok ? strings.verdict_ok_detail : strings.verdict_retake_detail;

    const list = el("advice");
    list.replaceChildren();
    const spoken = [el("verdict-title").textContent + "."];
    for (const problem of answer.problems || []) {
      const item = adviceTemplate.content.firstElementChild.cloneNode(true);
      item.dataset.code = problem.code;
      const title = strings.problems[problem.code] || strings.problems.other;
      item.querySelector("[data-advice-title]").textContent = title;
      item.querySelector("[data-advice-text]").textContent = problem.message;
      list.appendChild(item);
      spoken.push(problem.message);
    }
    list.hidden = list.children.length === 0;

    el("file-name").textContent = answer.file || "—";
    const size = formatSize(answer.metrics || {});
    el("file-size").textContent = size;
    el("file-size-row").hidden = !size;
    announcer.textContent = spoken.join(" ");
  }

  async function check(file) {
    const token = ++latest;
    showPreview(file);
    if (file.size > maxBytes) {
      showError(strings.errors.too_large);
      return;
    }
    setState("checking");
    announcer.textContent = strings.checking;
    result.scrollIntoView({ behavior: "smooth", block: "nearest" });

    const body = new FormData();
    body.append("file", file, file.name);
    let response;
    let answer = null;
    try {
      response = await fetch(endpoint + "?lang=" + encodeURIComponent(lang), {
        method: "POST",
        body: body,
        headers: { Accept: "application/json" },
      });
      answer = await response.json().catch(() => null);
    } catch (networkError) {
      if (token === latest) {
        showError(strings.errors.network);
      }
      return;
    }
    if (token !== latest) {
      return;
    }
    if (response.ok && answer) {
      showVerdict(answer);
      return;
    }
    const code = answer && answer.detail && answer.detail.code;
    showError(strings.errors[code] || strings.errors.generic);
  }

  for (const input of inputs) {
    input.addEventListener("change", () => {
      const file = input.files && input.files[0];
      if (file) {
        check(file);
      }
      // Let the same file be chosen again after the GP fixed nothing but wants a re-check.
      input.value = "";
    });
  }

  retry.addEventListener("click", () => {
    inputs[0].click();
  });
})();
