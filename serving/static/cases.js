// DermTriage case pages: photo zoom, Grad-CAM toggle, instant photo-quality feedback on the GP form.
(function () {
  "use strict";

  // --- Photo lightbox with zoom (wheel, buttons) and drag to pan --------------------------------
  const box = document.getElementById("lightbox");
  if (box) {
    const img = document.getElementById("lightbox-img");
    const title = document.getElementById("lightbox-title");
    let scale = 1, x = 0, y = 0, drag = null;
    const apply = () => { img.style.transform = `translate(${x}px, ${y}px) scale(${scale})`; };
    const zoom = (factor) => { scale = Math.min(8, Math.max(1, scale * factor)); if (scale === 1) { x = 0; y = 0; } apply(); };
    const open = (src, label) => { img.src = src; title.textContent = label || ""; scale = 1; x = 0; y = 0; apply(); box.classList.add("open"); box.setAttribute("aria-hidden", "false"); };
    const close = () => { box.classList.remove("open"); box.setAttribute("aria-hidden", "true"); img.removeAttribute("src"); };
    document.querySelectorAll(".photo-frame").forEach((frame) => {
      frame.addEventListener("click", () => {
        const card = frame.closest(".photo-card");
        const overlay = frame.querySelector("img.overlay");
        const src = card && card.classList.contains("saliency") && overlay ? overlay.src : frame.dataset.full;
        open(src, frame.dataset.title);
      });
    });
    box.querySelectorAll("[data-zoom]").forEach((b) => b.addEventListener("click", () => {
      const how = b.dataset.zoom;
      if (how === "in") zoom(1.5); else if (how === "out") zoom(1 / 1.5); else { scale = 1; x = 0; y = 0; apply(); }
    }));
    box.querySelector("[data-close]").addEventListener("click", close);
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });
    const stage = box.querySelector(".stage");
    stage.addEventListener("wheel", (e) => { e.preventDefault(); zoom(e.deltaY < 0 ? 1.2 : 1 / 1.2); }, { passive: false });
    stage.addEventListener("mousedown", (e) => { drag = { sx: e.clientX - x, sy: e.clientY - y }; stage.style.cursor = "grabbing"; });
    window.addEventListener("mousemove", (e) => { if (drag && scale > 1) { x = e.clientX - drag.sx; y = e.clientY - drag.sy; apply(); } });
    window.addEventListener("mouseup", () => { drag = null; stage.style.cursor = "grab"; });
  }

  // --- Photo / Grad-CAM toggle -------------------------------------------------------------
  document.querySelectorAll(".photo-card .toggle button").forEach((button) => {
    button.addEventListener("click", () => {
      const card = button.closest(".photo-card");
      card.classList.toggle("saliency", button.dataset.view === "saliency");
      button.parentElement.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b === button));
    });
  });

  // --- GP form: check each chosen photo with /api/v1/quality at once ---------------------------
  const form = document.getElementById("request-form");
  if (!form) return;
  const lang = document.documentElement.lang || "fr";
  const text = JSON.parse(document.getElementById("quality-texts").textContent);

  async function check(file, verdict) {
    verdict.className = "verdict pending";
    verdict.textContent = text.checking;
    const body = new FormData();
    body.append("file", file, file.name);
    try {
      const response = await fetch(`/api/v1/quality?lang=${lang}`, { method: "POST", body });
      const result = await response.json();
      if (result.acceptable) {
        verdict.className = "verdict ok";
        verdict.textContent = "✓ " + text.good;
      } else {
        verdict.className = "verdict bad";
        verdict.textContent = text.retake;
        const list = document.createElement("ul");
        (result.problems || []).forEach((p) => { const li = document.createElement("li"); li.textContent = p.message; list.appendChild(li); });
        verdict.appendChild(list);
      }
      verdict.dataset.acceptable = String(Boolean(result.acceptable));
    } catch (error) {
      verdict.className = "verdict pending";
      verdict.textContent = "";
    }
  }

  form.querySelectorAll("input[type=file]").forEach((input) => {
    input.addEventListener("change", () => {
      const slot = input.closest(".photo-slot");
      const preview = slot.querySelector(".preview");
      preview.innerHTML = "";
      slot.classList.toggle("has-photo", input.files.length > 0);
      Array.from(input.files).slice(0, 5).forEach((file) => {
        const figure = document.createElement("figure");
        const image = document.createElement("img");
        image.alt = file.name;
        image.src = URL.createObjectURL(file);
        const verdict = document.createElement("div");
        verdict.className = "verdict pending";
        verdict.setAttribute("data-quality-verdict", "");
        figure.append(image, verdict);
        preview.appendChild(figure);
        check(file, verdict);
      });
    });
  });
  form.addEventListener("submit", () => {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = text.submitting;
  });
})();
