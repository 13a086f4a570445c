// berth UI: copy buttons and delete confirmations. Pages work without it.
"use strict";
document.addEventListener("click", (e) => {
  const b = e.target.closest("button.copy");
  if (!b) return;
  const text = b.getAttribute("data-copy");
  const done = () => { b.textContent = "Copied"; setTimeout(() => { b.textContent = "Copy"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => { b.textContent = "Select and copy"; });
  } else {
    const code = b.parentElement.querySelector("code");
    const r = document.createRange();
    r.selectNodeContents(code);
    const s = window.getSelection();
    s.removeAllRanges();
    s.addRange(r);
    try { document.execCommand("copy"); done(); } catch (_) { b.textContent = "Selected"; }
  }
});
document.addEventListener("submit", (e) => {
  const f = e.target.closest("form[data-confirm]");
  if (f && !window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
});
