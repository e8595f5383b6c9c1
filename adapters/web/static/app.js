// The qbot web console. Everything shown comes from the user or from Amazon Q, so nothing is ever parsed as
// HTML: text goes in with textContent, and the small markdown renderer below builds DOM nodes itself (the
// page's Content-Security-Policy enforces Trusted Types, so an innerHTML assignment would throw).
"use strict";

(function () {
  const MAX_TEXT = 8000;
  const MAX_COMMENT = 1000; // Q Business keeps at most 1000 characters of a feedback comment
  const state = { csrf: null, thread: newId(), busy: false, reasons: [] };
  const $ = (id) => document.getElementById(id);

  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes); // randomUUID needs a secure context; this works on plain http too
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "testid") node.dataset.testid = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function webUrl(url) {
    // Only absolute http(s) links are followed; javascript:, data: and the like stay text.
    if (typeof url !== "string") return null;
    try {
      const parsed = new URL(url, location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (_) {
      return null;
    }
  }

  function link(url, label, props) {
    return el("a", { href: url, target: "_blank", rel: "noopener noreferrer", ...props }, [label]);
  }

  // --- markdown-ish rendering: `code`, **bold**, *italic*, [text](url), bare URLs, [n] citations, lists,
  // headings, fenced code blocks, line breaks. Input is treated as text throughout.

  const INLINE = new RegExp(
    [
      "`([^`\\n]+)`", // 1 code
      "\\[([^\\]\\n]+)\\]\\(([^()\\s]+)\\)", // 2,3 link
      "\\[(\\d{1,3})\\]", // 4 citation
      "\\*\\*(?=\\S)([^\\n]*?\\S)\\*\\*", // 5 bold
      "__(?=\\S)([^\\n]*?\\S)__", // 6 bold
      "\\*(?=[^\\s*])([^*\\n]*?[^\\s*])\\*", // 7 italic
      "(?<!\\w)_(?=[^\\s_])([^_\\n]*?[^\\s_])_(?!\\w)", // 8 italic
      "(https?:\\/\\/[^\\s<>()\\[\\]]*[^\\s<>()\\[\\].,;:!?'\"])", // 9 bare URL
    ].join("|"),
    "g",
  );

  function renderInline(text, sources) {
    const out = document.createDocumentFragment();
    let last = 0;
    const matches = Array.from(text.matchAll(INLINE));
    for (const m of matches) {
      if (m.index > last) out.append(text.slice(last, m.index));
      last = m.index + m[0].length;
      if (m[1] !== undefined) {
        out.append(el("code", { text: m[1] }));
      } else if (m[2] !== undefined) {
        const url = webUrl(m[3]);
        out.append(url ? link(url, m[2]) : m[2]);
      } else if (m[4] !== undefined) {
        const source = sources.get(Number(m[4]));
        const url = source && webUrl(source.url);
        const label = `[${m[4]}]`;
        out.append(url ? link(url, label, { class: "cite", title: source.title || "" })
                       : el("span", { class: "cite", text: label }));
      } else if (m[5] !== undefined || m[6] !== undefined) {
        out.append(el("strong", {}, [renderInline(m[5] ?? m[6], sources)]));
      } else if (m[7] !== undefined || m[8] !== undefined) {
        out.append(el("em", {}, [renderInline(m[7] ?? m[8], sources)]));
      } else if (m[9] !== undefined) {
        const url = webUrl(m[9]);
        out.append(url ? link(url, m[9]) : m[9]);
      }
    }
    if (last < text.length) out.append(text.slice(last));
    return out;
  }

  function renderMarkdown(text, sourceList) {
    const sources = new Map((sourceList || []).map((s) => [s.number, s]));
    const out = document.createDocumentFragment();
    const parts = String(text).replace(/\r\n?/g, "\n").split(/^```[^\n]*\n?/m);
    parts.forEach((part, index) => {
      if (index % 2 === 1) {
        out.append(el("pre", {}, [el("code", { text: part.replace(/\n$/, "") })]));
        return;
      }
      let list = null;
      let paragraph = null;
      for (const line of part.split("\n")) {
        const bullet = /^\s*[-*•]\s+(.*)$/.exec(line);
        const numbered = /^\s*(\d{1,3})[.)]\s+(.*)$/.exec(line);
        const heading = /^\s*#{1,6}\s+(.*)$/.exec(line);
        if (bullet || numbered) {
          const tag = bullet ? "ul" : "ol";
          if (!list || list.tagName.toLowerCase() !== tag) {
            list = el(tag);
            if (numbered) list.setAttribute("start", numbered[1]);
            out.append(list);
          }
          paragraph = null;
          list.append(el("li", {}, [renderInline(bullet ? bullet[1] : numbered[2], sources)]));
        } else if (heading) {
          list = paragraph = null;
          out.append(el("h4", {}, [renderInline(heading[1], sources)]));
        } else if (line.trim() === "") {
          list = paragraph = null;
        } else {
          list = null;
          if (paragraph) paragraph.append(el("br"));
          else out.append((paragraph = el("p")));
          paragraph.append(renderInline(line, sources));
        }
      }
    });
    return out;
  }

  // For tests and the curious: render to an HTML string (reading innerHTML is safe; only writing is a sink).
  window.qbotMarkdown = (text, sources) => el("div", {}, [renderMarkdown(text, sources)]).innerHTML;

  // --- talking to the bot

  async function api(path, body) {
    const init = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.headers["X-QBot-CSRF"] = state.csrf || "";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      return { status: 0, data: { type: "error", error: "Could not reach qbot. Check your connection." } };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = { error: `qbot answered ${response.status}.` };
    }
    return { status: response.status, data };
  }

  async function refreshAccount() {
    const { status, data } = await api("/web/api/me");
    $("loading").hidden = true;
    const linked = status === 200 && data.signed_in && data.linked;
    state.csrf = status === 200 ? data.csrf : null;
    state.reasons = (status === 200 && Array.isArray(data.feedback_reasons) && data.feedback_reasons) || [];
    $("signed-in-as").hidden = !linked;
    $("signed-in-as").textContent = linked ? `Signed in as ${data.email}` : "";
    $("sign-out").hidden = !linked;
    $("welcome").hidden = linked;
    if (linked) $("welcome-note").textContent = "";
    else if (status !== 200) $("welcome-note").textContent = "qbot is not answering right now. Try again in a minute.";
    $("chat").hidden = !linked;
    if (linked) $("input").focus();
    return linked;
  }

  // --- the conversation view

  function addItem(node) {
    $("messages").append(node);
    node.scrollIntoView({ block: "end" });
    return node;
  }

  function noticeItem(kind, text, url) {
    const item = el("li", { class: `msg notice notice-${kind}`, testid: "notice", role: kind === "error" ? "alert" : "status" },
      [el("p", { testid: "notice-text", text: text || "" })]);
    const safe = webUrl(url);
    if (safe) item.append(el("p", {}, [link(safe, kind === "link" ? "Open the sign-in link" : safe, { testid: "notice-link" })]));
    if (kind === "not_linked") {
      item.append(el("p", {}, [el("a", { href: "/web/login", class: "button primary", testid: "notice-sign-in", text: "Sign in" })]));
    }
    return item;
  }

  // 👍 is one click; 👎 asks why first (Q's reasons, from /web/api/me) in a small form under the answer.
  function feedbackBar(answer) {
    const bar = el("div", { class: "feedback", testid: "feedback" });
    const up = el("button", { type: "button", testid: "feedback-up", title: "This answer helped", text: "👍 Helpful" });
    const down = el("button", { type: "button", testid: "feedback-down", title: "This answer did not help", text: "👎 Not helpful" });
    const status = el("span", { class: "feedback-status", testid: "feedback-status", role: "status" });
    async function send(useful, why) {
      up.disabled = down.disabled = true;
      status.textContent = "";
      const { status: code, data } = await api("/web/api/feedback", {
        conversation_id: answer.conversation_id, message_id: answer.message_id, useful, ...why,
      });
      if (code === 200) {
        bar.replaceChildren(el("span", { class: "feedback-thanks", testid: "feedback-thanks", text: "Thanks for the feedback" }));
      } else {
        status.textContent = (data && data.error) || "Could not send the feedback.";
      }
      return code;
    }
    function askWhy() {
      up.disabled = down.disabled = true;
      status.textContent = "";
      const reason = el("select", { testid: "feedback-reason", required: "", "aria-label": "What was wrong with the answer?" },
        [el("option", { value: "", text: "What was wrong with the answer?" }),
         ...state.reasons.map((r) => el("option", { value: r.value, text: r.label }))]);
      const comment = el("textarea", { testid: "feedback-comment", rows: "2", maxlength: String(MAX_COMMENT),
        placeholder: "Anything to add? (optional)", "aria-label": "Anything to add? (optional)" });
      const sendWhy = el("button", { type: "submit", class: "primary", testid: "feedback-send", text: "Send" });
      const cancel = el("button", { type: "button", testid: "feedback-cancel", text: "Cancel" });
      const form = el("form", { class: "feedback-why", testid: "feedback-why" },
        [reason, comment, el("div", { class: "actions" }, [sendWhy, cancel])]);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        sendWhy.disabled = cancel.disabled = true;
        const code = await send(false, { reason: reason.value, comment: comment.value.trim() || null });
        if (code === 403) form.remove(); // not this user's answer to rate: nothing more to try
        else if (code !== 200) sendWhy.disabled = cancel.disabled = false;
      });
      cancel.addEventListener("click", () => {
        form.remove();
        status.textContent = "";
        up.disabled = down.disabled = false;
      });
      bar.append(form);
      reason.focus();
    }
    async function rate(useful) {
      const code = await send(useful);
      if (code !== 200) up.disabled = down.disabled = code === 403;
    }
    up.addEventListener("click", () => rate(true));
    down.addEventListener("click", () => (state.reasons.length ? askWhy() : rate(false)));
    bar.append(up, down, status);
    return bar;
  }

  function answerItem(answer) {
    const item = el("li", { class: "msg bot answer", testid: "answer" });
    item.dataset.conversationId = answer.conversation_id;
    item.append(el("div", { class: "answer-text", testid: "answer-text" }, [renderMarkdown(answer.text, answer.sources)]));
    const failed = answer.failed_attachments || [];
    if (failed.length) {
      item.append(el("ul", { class: "failed", testid: "failed-attachments" },
        failed.map((f) => el("li", { text: `${f.name} was not read: ${f.error}` }))));
    }
    const sources = answer.sources || [];
    if (sources.length) {
      const list = el("ol", { class: "sources-list" });
      for (const source of sources) {
        const url = webUrl(source.url);
        const title = source.title || url || `Source ${source.number}`;
        const entry = el("li", { value: String(source.number), testid: "source" },
          [url ? link(url, title, { testid: "source-link" }) : el("span", { testid: "source-title", text: title })]);
        if (source.snippet) entry.append(el("div", { class: "snippet", text: source.snippet }));
        list.append(entry);
      }
      item.append(el("section", { class: "sources", testid: "sources" }, [el("h3", { text: "Sources" }), list]));
    }
    item.append(feedbackBar(answer));
    return item;
  }

  async function ask(text) {
    state.busy = true;
    $("send").disabled = true;
    addItem(el("li", { class: "msg user", testid: "question" }, [el("p", { text })]));
    const thinking = addItem(el("li", { class: "msg bot thinking", testid: "thinking", text: "Thinking…" }));
    const { status, data } = await api("/web/api/ask", { text, thread: state.thread, message_id: newId() });
    let item;
    let kind = "answer";
    let message = "";
    if (status === 200 && data.type === "answer") {
      item = answerItem(data);
    } else {
      kind = status === 200 ? data.type : data && data.kind === "not_linked" ? "not_linked" : "error";
      message = status === 200 ? data.text : (data && data.error) || "Something went wrong.";
      item = noticeItem(kind, message, status === 200 ? data.url : null);
    }
    thinking.replaceWith(item);
    item.scrollIntoView({ block: "end" });
    state.busy = false;
    $("send").disabled = false;
    if (kind !== "answer" && !(await refreshAccount())) {
      // qunlink, an expired link, a lost session: the chat is gone, so say why on the sign-in screen.
      $("welcome-note").textContent =
        kind === "not_linked" ? "Your sign-in has ended. Sign in again to continue." : message;
    }
  }

  function submit() {
    const input = $("input");
    const text = input.value.trim();
    if (!text || state.busy) return;
    if (text.length > MAX_TEXT) {
      addItem(noticeItem("error", `Your message is too long (${text.length} characters); the limit is ${MAX_TEXT}.`));
      return;
    }
    input.value = "";
    ask(text);
  }

  function newConversation() {
    state.thread = newId();
    $("messages").replaceChildren(noticeItem("info", "New conversation. Ask away."));
    $("input").focus();
  }

  async function signOut() {
    $("sign-out").disabled = true;
    await api("/web/logout", {});
    $("sign-out").disabled = false;
    $("messages").replaceChildren();
    state.thread = newId();
    await refreshAccount();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    $("input").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });
    $("new-conversation").addEventListener("click", newConversation);
    $("sign-out").addEventListener("click", signOut);
    refreshAccount();
  });
})();
