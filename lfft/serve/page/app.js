// The lfft chat page: plain JS, no build step. Every text goes into the page with
// textContent (never innerHTML), so user and model text cannot inject markup.
"use strict";
const $ = (sel) => document.querySelector(sel);
const chat = $("#chat");
let session = null;
let turns = []; // {role, content, id, el}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("#key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function status(text) { $("#status").textContent = text || ""; }

async function apiError(resp) {
  try { return (await resp.json()).error.message; } catch (e) { return resp.status + " " + resp.statusText; }
}

function bubble(turn) {
  const el = document.createElement("div");
  el.className = "msg " + turn.role;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = turn.content;
  el.appendChild(text);
  if (turn.role === "assistant") el.appendChild($("#answer-tools").content.cloneNode(true));
  chat.appendChild(el);
  turn.el = el;
  return el;
}

async function feedback(turn, kind, value, extra) {
  const body = Object.assign({ message_id: turn.id, session_id: session, kind: kind }, extra || {});
  if (value !== undefined) body.value = value;
  const resp = await fetch("/v1/feedback", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!resp.ok) { status(await apiError(resp)); return false; }
  status("");
  return true;
}

// Ask for an answer to turns[0..n) and stream it into a new bubble.
async function complete() {
  const history = turns.map((t) => ({ role: t.role, content: t.content }));
  const ids = turns.map((t) => t.id || null);
  const body = { messages: history, stream: true };
  if (session) body.lfft = { session_id: session, message_ids: ids };
  const turn = { role: "assistant", content: "", id: null };
  const el = bubble(turn);
  el.classList.add("streaming");
  $("#send").disabled = true;
  try {
    const resp = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!resp.ok) { status(await apiError(resp)); el.remove(); return; }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut).trim();
        buf = buf.slice(cut + 2);
        if (!line.startsWith("data: {")) continue;
        const chunk = JSON.parse(line.slice(6));
        turn.id = chunk.id;
        if (chunk.lfft) {
          session = chunk.lfft.session_id;
          chunk.lfft.message_ids.forEach((id, i) => { turns[i].id = id; });
        }
        const delta = chunk.choices.length ? chunk.choices[0].delta.content : "";
        if (delta) { turn.content += delta; el.querySelector(".text").textContent = turn.content; }
        el.querySelector(".model").textContent = chunk.model;
        $("#version").textContent = "answered by " + chunk.model;
      }
    }
    turns.push(turn);
    el.dataset.id = turn.id;
    status("");
  } catch (e) {
    status(String(e)); el.remove();
  } finally {
    el.classList.remove("streaming");
    $("#send").disabled = false;
  }
}

function openForm(turn, mode, initial) {
  const form = turn.el.querySelector(".form");
  form.hidden = false;
  form.dataset.mode = mode;
  const area = form.querySelector("textarea");
  area.value = initial;
  area.focus();
}

chat.addEventListener("click", async (ev) => {
  const btn = ev.target.closest("button[data-act]");
  if (!btn) return;
  const el = btn.closest(".msg");
  const turn = turns.find((t) => t.el === el);
  if (!turn || !turn.id) return;
  const act = btn.dataset.act;
  if (act === "up" || act === "down") {
    if (await feedback(turn, "thumbs", act)) {
      el.querySelectorAll("[data-act=up],[data-act=down]").forEach((b) => b.classList.toggle("on", b === btn));
    }
  } else if (act === "comment") openForm(turn, "comment", "");
  else if (act === "edit") openForm(turn, "edit", turn.content);
  else if (act === "cancel") el.querySelector(".form").hidden = true;
  else if (act === "save") {
    const form = el.querySelector(".form");
    const text = form.querySelector("textarea").value;
    if (!text.trim()) { status("write something first"); return; }
    if (await feedback(turn, form.dataset.mode, text)) {
      if (form.dataset.mode === "edit") { turn.content = text; el.querySelector(".text").textContent = text; }
      form.hidden = true;
    }
  } else if (act === "copy") {
    try { await navigator.clipboard.writeText(turn.content); } catch (e) { /* no clipboard: still a copy */ }
    await feedback(turn, "copy");
  } else if (act === "regenerate") {
    const at = turns.indexOf(turn);
    if (!(await feedback(turn, "regenerate"))) return;
    turns.slice(at).forEach((t) => t.el.remove()); // the sibling replaces it (and what followed)
    turns = turns.slice(0, at);
    await complete();
  }
});

chat.addEventListener("change", async (ev) => {
  const sel = ev.target.closest("select[data-act=rating]");
  if (!sel || !sel.value) return;
  const turn = turns.find((t) => t.el === sel.closest(".msg"));
  if (turn && turn.id) await feedback(turn, "rating", Number(sel.value), { scale: 5 });
});

$("#ask").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("#prompt").value;
  if (!text.trim() || $("#send").disabled) return;
  $("#prompt").value = "";
  const turn = { role: "user", content: text, id: null };
  bubble(turn);
  turns.push(turn);
  await complete();
});

$("#prompt").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("#ask").requestSubmit(); }
});

$("#new").addEventListener("click", () => { session = null; turns = []; chat.textContent = ""; status(""); });
$("#key").value = sessionStorage.getItem("lfft-key") || "";
$("#key").addEventListener("change", () => sessionStorage.setItem("lfft-key", $("#key").value));
